"""Benchmark: a channel tree in an S3 bucket (moto on 127.0.0.1), side by side in one run.

moto's standalone server runs in a child process (its own GIL); the upstream channel is
bench_sync.py's generator with small payloads (--packages files of --min-kb to --max-kb of
incompressible bytes, 8 builds per name, 30% noarch; built once, cached under --workdir) and
is served by tests.support.upstream_server.UpstreamServer on 127.0.0.1. Every tool is a child
process timed from start to exit (interpreter start-up included). Each round, the order
rotating:

  sync    (a) `mirror sync` into a fresh prefix of the bucket (workers: 8, the default
              adaptive limit above it), then (d) the same command again with nothing new
              (a no-op: upstream answers 304, nothing is written but the lease);
          (b) `mirror sync` of the same upstream into a fresh local directory;
          (c) a bare parallel PUT of the same package files with obstore (--put-workers at
              once, sha256 checksums as mirror sends them): the limit of any sync into this
              server. Target: (a) within 1.3x of (c); (d) under 0.3 s.
  index   (e) a channel of the same package files kept in the bucket (uploaded once), its
              index outputs deleted before each tool's turn: `mirror index s3://.../chan
              --no-run-exports --no-channeldata` (the outputs rattler writes) with a fresh
              state directory, from scratch, then once more after one package was added;
              the same for py-rattler's `rattler.index.index_s3` (write_zst, write_shards,
              path-style addressing). Targets: from scratch <= 0.5x rattler's time, +1
              package under 1 s.

Every run is checked: the bucket's repodata.json files list exactly the upstream's (or the
channel's) files, and every package file is in the bucket.

Run from the repository root:
    python -m tests.bench.bench_bucket [--rounds 3] [--packages 2000] [--workdir DIR]
        [--json OUT] [--only sync,index]
    python -m tests.bench.bench_bucket bare-put --endpoint URL --bucket B --prefix P SOURCE
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from tests.bench.bench_objectstore import start_moto
from tests.bench.bench_sync import CHANNEL, PACKAGE_SUFFIXES, SEED, Sizes, ensure_upstream
from tests.bench.benchlib import (
    PYTHON,
    ChildRun,
    Sample,
    Samples,
    Summary,
    child_env,
    fmt_ratio,
    fmt_s,
    markdown_table,
    rotated,
    run_child,
    warm_server,
    write_json,
)
from tests.support.s3_server import REGION, environment
from tests.support.upstream_server import UpstreamServer

BUCKET = "bench"
SUBDIRS = ("linux-64", "noarch")
SYNC_BUCKET = "(a) mirror sync into the bucket"
SYNC_LOCAL = "(b) mirror sync into a local directory"
BARE_PUT = "(c) bare parallel PUT, obstore"
NOOP = "(d) mirror sync no-op, bucket (whole command)"
INDEX_MIRROR = "(e) mirror index s3://, from scratch"
INDEX_MIRROR_ONE = "(e) mirror index s3://, +1 package"
INDEX_RATTLER = "(e) rattler index_s3, from scratch"
INDEX_RATTLER_ONE = "(e) rattler index_s3, +1 package"
LEAN_FLAGS = ("--no-run-exports", "--no-channeldata")
TIMEOUT_S = 900
RATTLER_CODE = (
    "import asyncio, os, sys\n"
    "from rattler.index import S3Credentials, index_s3\n"
    "credentials = S3Credentials(endpoint_url=sys.argv[2], region=os.environ['AWS_REGION'],\n"
    "    access_key_id=os.environ['AWS_ACCESS_KEY_ID'],\n"
    "    secret_access_key=os.environ['AWS_SECRET_ACCESS_KEY'], addressing_style='path')\n"
    "asyncio.run(index_s3(sys.argv[1], credentials=credentials, write_zst=True,"
    " write_shards=True))\n"
    "sys.stdout.flush(); os._exit(0)  # py-rattler 0.28 may crash at interpreter exit\n"
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    """The upstream and the generated channel, shared by every round, and the moto child,
    started afresh for every tool's turn: moto slows down as it holds more objects (its
    garbage collector walks them all), so no tool may inherit another's."""

    def __init__(self, workdir: Path, server: UpstreamServer, upstream: Path) -> None:
        self.workdir, self.server, self.upstream = workdir, server, upstream
        self.files = sorted(p for p in upstream.rglob("*") if p.name.endswith(PACKAGE_SUFFIXES))
        self.moto: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.env: dict[str, str] = {}

    def fresh_moto(self) -> None:
        """An empty moto (with the bucket "bench") from now on."""
        self.stop_moto()
        self.moto, port = start_moto()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {**child_env(), **environment(), "AWS_ENDPOINT_URL": self.endpoint}

    def stop_moto(self) -> None:
        if self.moto is not None:
            self.moto.kill()
            self.moto.wait()
            self.moto = None

    def run(self, cmd: list[str], log: Path) -> tuple[ChildRun, dict[str, float]]:
        """Run a tool; with the CPU seconds moto and this process (the upstream server)
        spent meanwhile: on 2 cores they compete with the tool for the CPU."""
        pid = self.moto.pid if self.moto is not None else os.getpid()
        moto, own = cpu_seconds(pid), time.process_time()
        run = run_child(cmd, log, env=self.env, timeout=TIMEOUT_S)
        cpu = {"moto_cpu_s": cpu_seconds(pid) - moto if self.moto is not None else 0.0,
               "upstream_cpu_s": time.process_time() - own, "tool_cpu_s": run.cpu_s}  # fmt: skip
        return run, cpu

    def bucket(self, prefix: str) -> Any:
        from mirror.adapters.objectstore import Bucket, BucketLocation

        location = BucketLocation(BUCKET, prefix, endpoint_url=self.endpoint, region=REGION)
        return Bucket(location, environ=self.env)

    def listed(self, prefix: str) -> set[str]:
        import json

        bucket, names = self.bucket(prefix), set()
        for subdir in SUBDIRS:
            doc = json.loads(bucket.get_bytes(f"{subdir}/repodata.json"))
            names |= {f"{subdir}/{fn}" for fn in (*doc["packages"], *doc["packages.conda"])}
        return names

    def expected(self) -> set[str]:
        return {f"{p.parent.name}/{p.name}" for p in self.files}


def sync_config(out: Path, bench: Bench, root: str, storage: bool) -> Path:
    document: dict[str, Any] = {
        "root": root,
        "state_dir": str(out / "state"),
        "workers": 8,
        "channels": {
            CHANNEL: {"upstream": f"{bench.server.url}/{CHANNEL}", "subdirs": list(SUBDIRS)}
        },
    }
    if storage:
        document["storage"] = {"endpoint_url": bench.endpoint, "region": REGION}
    path = out / "mirror.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def run_sync_bucket(bench: Bench, out: Path, round_no: int, samples: Samples) -> None:
    bench.fresh_moto()
    prefix = f"r{round_no}/sync"
    config = sync_config(out, bench, f"s3://{BUCKET}/{prefix}", storage=True)
    for row in (SYNC_BUCKET, NOOP):
        run, cpu = bench.run(
            [PYTHON, "-m", "mirror", "sync", "--config", str(config)], out / f"{row[:3]}.log"
        )
        problems = [] if run.returncode == 0 else [f"exit {run.returncode}: {run.output()[-300:]}"]
        listed = bench.listed(f"{prefix}/{CHANNEL}")
        if listed != bench.expected():
            problems.append(f"repodata lists {len(listed)} files, upstream {len(bench.files)}")
        samples[row].append(Sample(run.seconds, run.max_rss_bytes, problems, cpu))


def run_sync_local(bench: Bench, out: Path, round_no: int, samples: Samples) -> None:
    bench.stop_moto()  # not used, and not to be paid for
    config = sync_config(out, bench, str(out / "tree"), storage=False)
    run, cpu = bench.run(
        [PYTHON, "-m", "mirror", "sync", "--config", str(config)], out / "local.log"
    )
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}"]
    samples[SYNC_LOCAL].append(Sample(run.seconds, run.max_rss_bytes, problems, cpu))


def run_bare_put(bench: Bench, out: Path, round_no: int, samples: Samples, workers: int) -> None:
    bench.fresh_moto()
    prefix = f"r{round_no}/bare"
    run, cpu = bench.run(
        [PYTHON, "-m", "tests.bench.bench_bucket", "bare-put", "--endpoint", bench.endpoint,
         "--bucket", BUCKET, "--prefix", prefix, "--workers", str(workers), str(bench.upstream)],
        out / "bare.log",
    )  # fmt: skip
    stored = set(bench.bucket(prefix).walk(""))
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}: {run.output()[-300:]}"]
    if stored != bench.expected():
        problems.append(f"{len(stored)} objects stored, {len(bench.files)} files")
    samples[BARE_PUT].append(Sample(run.seconds, run.max_rss_bytes, problems, cpu))


# -- the index scenario ------------------------------------------------------------------------

INDEX_PREFIX = "index/chan"


def index_run(
    bench: Bench, tool: str, out: Path, samples: Samples, row: str, expected: int
) -> None:
    channel = f"s3://{BUCKET}/{INDEX_PREFIX}"
    if tool == "mirror":
        cmd = [PYTHON, "-m", "mirror", "index", channel, "--state-dir", str(out / "state"),
               *LEAN_FLAGS]  # fmt: skip
    else:
        cmd = [PYTHON, "-c", RATTLER_CODE, channel, bench.endpoint]
    run, cpu = bench.run(cmd, out / f"{tool}-{expected}.log")
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}: {run.output()[-300:]}"]
    if run.returncode == 0:
        listed = bench.listed(INDEX_PREFIX)
        if len(listed) != expected:
            problems.append(f"repodata lists {len(listed)} files, expected {expected}")
    samples[row].append(Sample(run.seconds, run.max_rss_bytes, problems, cpu))


def run_index(bench: Bench, out: Path, tool: str, extra: Path, samples: Samples) -> None:
    scratch, plus_one = {
        "mirror": (INDEX_MIRROR, INDEX_MIRROR_ONE),
        "rattler": (INDEX_RATTLER, INDEX_RATTLER_ONE),
    }[tool]
    bench.fresh_moto()
    upload_channel(bench)
    index_run(bench, tool, out, samples, scratch, len(bench.files))
    bench.bucket(INDEX_PREFIX).put_file(f"{extra.parent.name}/{extra.name}", extra)
    index_run(bench, tool, out, samples, plus_one, len(bench.files) + 1)


def upload_channel(bench: Bench) -> None:
    bucket = bench.bucket(INDEX_PREFIX)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: bucket.put_file(f"{p.parent.name}/{p.name}", p), bench.files))


def extra_package(workdir: Path) -> Path:
    from tests.support.builder import PackageSpec, build_package

    spec = PackageSpec("benchpkg0000", "9.9.9", build="h0_0", subdir="linux-64",
                       files={"share/extra.bin": os.urandom(20_000)})  # fmt: skip
    folder = workdir / "extra" / "linux-64"
    shutil.rmtree(folder, ignore_errors=True)
    build_package(spec, folder)
    return folder / spec.filename


# -- the report --------------------------------------------------------------------------------


def median(samples: Samples, row: str) -> float:
    return Summary.of(s.seconds for s in samples[row]).median


def report(samples: Samples, files: int, megabytes: float) -> dict[str, Any]:
    rows = []
    for row, runs in samples.items():
        if not runs:
            continue
        summary = Summary.of(s.seconds for s in runs)
        problems = sorted({p for s in runs for p in s.problems})
        cpu = {k: Summary.of(s.extra.get(k, 0.0) for s in runs).median
               for k in ("tool_cpu_s", "moto_cpu_s", "upstream_cpu_s")}  # fmt: skip
        rows.append([row, fmt_s(summary.median), f"{fmt_s(summary.minimum)} / "
                     f"{fmt_s(summary.maximum)}", f"{cpu['tool_cpu_s']:.2f}",
                     f"{cpu['moto_cpu_s']:.2f}", f"{cpu['upstream_cpu_s']:.2f}", summary.n,
                     "; ".join(problems) or "ok"])  # fmt: skip
    print(f"\n### {files} package files ({megabytes:.1f} MB), moto on 127.0.0.1 (medians)\n")
    headers = ["", "median s", "min / max s", "tool CPU s", "moto CPU s", "upstream CPU s",
               "runs", "check"]  # fmt: skip
    print(markdown_table(headers, rows))
    targets: list[tuple[str, str, bool]] = []  # (what, measured, met)
    if samples[SYNC_BUCKET] and samples[BARE_PUT]:
        ratio = median(samples, SYNC_BUCKET) / median(samples, BARE_PUT)
        targets.append(("sync into the bucket within 1.3x of the bare PUT", fmt_ratio(ratio),
                        ratio <= 1.3))  # fmt: skip
        noop = median(samples, NOOP)
        targets.append(("no-op resync, whole command, under 0.3 s", f"{noop:.3f} s", noop < 0.3))
    if samples[INDEX_MIRROR] and samples[INDEX_RATTLER]:
        ratio = median(samples, INDEX_MIRROR) / median(samples, INDEX_RATTLER)
        targets.append(("index from scratch <= 0.5x rattler's time", fmt_ratio(ratio),
                        ratio <= 0.5))  # fmt: skip
        one = median(samples, INDEX_MIRROR_ONE)
        targets.append(("index +1 package under 1 s", f"{one:.3f} s", one < 1.0))
    print("\n| target | measured | met |\n| --- | ---: | --- |")
    for what, shown, met in targets:
        print(f"| {what} | {shown} | {'yes' if met else 'NO'} |")
    return {
        "files": files,
        "megabytes": megabytes,
        "rows": {r: {"summary": asdict(Summary.of(s.seconds for s in runs)),
                     "samples": [asdict(s) for s in runs]}
                 for r, runs in samples.items()},
        "targets": [{"target": t, "measured": v, "met": m} for t, v, m in targets],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bare-put"]:
        return bare_put(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_bucket",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--packages", type=int, default=2000)
    parser.add_argument("--min-kb", type=int, default=2)
    parser.add_argument("--max-kb", type=int, default=30)
    parser.add_argument("--put-workers", type=int, default=8, help="the bare PUT's threads")
    parser.add_argument("--only", default="sync,index", help="scenarios: sync, index")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)
    scenarios = set(args.only.split(","))
    workdir = args.workdir.resolve() / "sync"  # shares bench_sync's cache of generated channels
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sizes = Sizes(args.packages, args.min_kb * 1000, args.max_kb * 1000)
    base, channel = ensure_upstream(workdir, sizes, SEED)
    megabytes = sum(r["size"] for rs in channel.values() for r in rs.values()) / 1e6
    rows = [SYNC_BUCKET, SYNC_LOCAL, BARE_PUT, NOOP, INDEX_MIRROR, INDEX_MIRROR_ONE,
            INDEX_RATTLER, INDEX_RATTLER_ONE]  # fmt: skip
    samples: Samples = {row: [] for row in rows}
    with UpstreamServer(base, latency_s=0.0) as server:
        bench = Bench(workdir / "bucket-runs", server, base / CHANNEL)
        try:
            warm_server(server.url, [f"/{CHANNEL}/{p.parent.name}/{p.name}" for p in bench.files])
            if "sync" in scenarios:
                run_rounds(bench, args, samples, sync_tools(args.put_workers))
            if "index" in scenarios:
                extra = extra_package(workdir)
                tools = [(t, lambda b, o, _r, s, t=t: run_index(b, o, t, extra, s))
                         for t in ("mirror", "rattler")]  # fmt: skip
                run_rounds(bench, args, samples, tools)
        finally:
            bench.stop_moto()
    results = report(samples, len(bench.files), megabytes)
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        results["wall_seconds"] = elapsed
        write_json(args.json, results)
    return 0


Tool = tuple[str, Callable[[Bench, Path, int, Samples], None]]


def sync_tools(put_workers: int) -> list[Tool]:
    return [
        ("bucket", run_sync_bucket),
        ("local", run_sync_local),
        ("bare", lambda b, o, r, s: run_bare_put(b, o, r, s, put_workers)),
    ]


def run_rounds(bench: Bench, args: argparse.Namespace, samples: Samples, tools: list[Tool]) -> None:
    for round_no in range(args.rounds):
        for name, tool in rotated(tools, round_no):
            out = bench.workdir / f"round-{round_no}" / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            tool(bench, out, round_no, samples)
            done = {row: runs[-1].seconds for row, runs in samples.items()
                    if runs and len(runs) == round_no + 1}  # fmt: skip
            shown = ", ".join(f"{row[:3]} {s:.2f} s" for row, s in done.items())
            print(f"round {round_no + 1}/{args.rounds}: {name}: {shown}", flush=True)
            shutil.rmtree(out, ignore_errors=True)


def bare_put(argv: list[str]) -> int:
    """The limit: every package file PUT once with obstore, --workers at once, with the
    sha256 checksum mirror sends (no reading back, no index, no state)."""
    import obstore
    from obstore.store import S3Store

    parser = argparse.ArgumentParser(prog="bench_bucket bare-put")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("source", type=Path)
    args = parser.parse_args(argv)
    files = [p for p in args.source.rglob("*") if p.name.endswith(PACKAGE_SUFFIXES)]
    store = S3Store(
        args.bucket, prefix=args.prefix, endpoint=args.endpoint, region=REGION,
        client_options={"allow_http": True}, checksum_algorithm="sha256",
    )  # fmt: skip

    def put(path: Path) -> None:
        obstore.put(store, f"{path.parent.name}/{path.name}", path.read_bytes())

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(put, files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
