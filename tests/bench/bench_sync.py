"""Benchmark 1: full sync of a generated 2,000-package channel, side by side in one run.

Compared, alternating the order each round, each in a fresh target directory:
  - `mirror sync` full (the real CLI in a subprocess, workers: 8);
  - `mirror sync` no-op right after it (upstream unchanged: must download nothing), as a CLI
    subprocess and as an in-process `run_sync(load_config(path), SyncOptions())` call, so that
    interpreter start-up and real work are seen apart;
  - conda-mirror 0.10.0 (`pip install conda-mirror==0.10.0`), once per subdir as it requires;
  - a bare parallel httpx fetch (one client, 8 threads, sha256 while streaming): the practical
    limit of any sync against this server; once more with an fsync per file, as mirror does.

The upstream (real .conda/.tar.bz2 files from tests.support.builder, 5-200 KB of seeded
incompressible payload each) is built once and cached under --workdir, and served by
tests.support.upstream_server.UpstreamServer on 127.0.0.1.

Run from the repository root:
    python -m tests.bench.bench_sync [--rounds 5] [--workdir DIR] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests.bench.benchlib import (
    CONDA_MIRROR,
    PYTHON,
    ChildRun,
    Summary,
    child_env,
    fmt_mb,
    fmt_ratio,
    fmt_s,
    last_json_line,
    markdown_table,
    rotated,
    rows_json,
    run_child,
    warm_server,
    write_json,
)
from tests.support.builder import PackageSpec, build_package, write_repodata
from tests.support.upstream_server import UpstreamServer

SEED = 20_240_611
CHANNEL = "bench-channel"
SUBDIRS = ("linux-64", "noarch")
WORKERS = 8
VERSIONS_PER_NAME = 8
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")


@dataclass(frozen=True)
class Sizes:
    packages: int
    min_payload: int = 5_000
    max_payload: int = 200_000


FULL = Sizes(2_000)
QUICK = Sizes(200)

Channel = dict[str, dict[str, dict[str, Any]]]  # subdir -> filename -> record


# -- the upstream channel -----------------------------------------------------------------------


def spec_for(index: int, sizes: Sizes, seed: int) -> PackageSpec:
    """Package number `index`, the same every run: 8 versions per name, 30% of names noarch,
    60% .conda, payload of seeded random (incompressible) bytes so transfers cost what they
    would for real."""
    rng = random.Random(f"{seed}:{index}")
    name_index = index // VERSIONS_PER_NAME
    name = f"benchpkg{name_index:04d}"
    version = f"1.{index % VERSIONS_PER_NAME}.0"
    noarch = name_index % 10 < 3
    payload = rng.randbytes(rng.randint(sizes.min_payload, sizes.max_payload))
    return PackageSpec(
        name=name,
        version=version,
        build=f"h{rng.getrandbits(28):07x}_0",
        subdir="noarch" if noarch else "linux-64",
        depends=("python >=3.8",) if noarch else ("libgcc-ng >=12", "zlib >=1.2.13,<2.0a0"),
        fmt=".conda" if rng.random() < 0.6 else ".tar.bz2",
        files={f"share/{name}/blob-{version}.bin": payload},
        timestamp_ms=1_700_000_000_000 + index * 60_000,
    )


def _build_one(job: tuple[int, Sizes, int, Path]) -> tuple[str, str, dict[str, Any]]:
    index, sizes, seed, root = job
    spec = spec_for(index, sizes, seed)
    return spec.subdir, spec.filename, build_package(spec, root / spec.subdir)


def ensure_upstream(workdir: Path, sizes: Sizes, seed: int) -> tuple[Path, Channel]:
    """Build the channel once (in parallel: bz2 of random bytes is slow); reuse it after."""
    base = workdir / f"upstream-{sizes.packages}-{sizes.min_payload}-{sizes.max_payload}-{seed}"
    root = base / CHANNEL
    marker = base / "complete.json"
    if marker.exists():
        return base, _read_channel(root)
    if base.exists():
        shutil.rmtree(base)
    started = time.perf_counter()
    channel: Channel = {subdir: {} for subdir in SUBDIRS}
    jobs = [(i, sizes, seed, root) for i in range(sizes.packages)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for subdir, filename, record in pool.map(_build_one, jobs, chunksize=16):
            channel[subdir][filename] = record
    for subdir, records in channel.items():
        write_repodata(root, subdir, records)
    files = sum(len(r) for r in channel.values())
    total = sum(rec["size"] for r in channel.values() for rec in r.values())
    marker.write_text(json.dumps({"files": files, "bytes": total, "seed": seed}) + "\n")
    print(
        f"built upstream: {files} packages, {fmt_mb(total)} MB in "
        f"{time.perf_counter() - started:.1f} s at {root}"
    )
    return base, channel


def _read_channel(root: Path) -> Channel:
    channel: Channel = {}
    for subdir in SUBDIRS:
        doc = json.loads((root / subdir / "repodata.json").read_bytes())
        channel[subdir] = {**doc["packages"], **doc["packages.conda"]}
    return channel


# -- checks ------------------------------------------------------------------------------------


def check_tree(target: Path, channel: Channel, *, published: bool) -> list[str]:
    """What is wrong with a mirrored tree: missing, extra or corrupt package files, and (when
    `published`) a repodata.json that does not list exactly the upstream's files."""
    problems: list[str] = []
    for subdir, records in channel.items():
        folder = target / subdir
        on_disk = (
            {p.name for p in folder.iterdir() if p.name.endswith(PACKAGE_SUFFIXES)}
            if folder.is_dir()
            else set()
        )
        missing, extra = set(records) - on_disk, on_disk - set(records)
        if missing:
            problems.append(f"{subdir}: {len(missing)} of {len(records)} files missing")
        if extra:
            problems.append(f"{subdir}: {len(extra)} unexpected files")
        bad = [
            fn
            for fn in sorted(on_disk & set(records))
            if hashlib.sha256((folder / fn).read_bytes()).hexdigest() != records[fn]["sha256"]
        ]
        if bad:
            problems.append(f"{subdir}: {len(bad)} files with a wrong sha256")
        if published:
            try:
                doc = json.loads((folder / "repodata.json").read_bytes())
                listed = set(doc.get("packages", {})) | set(doc.get("packages.conda", {}))
            except (OSError, ValueError) as exc:
                problems.append(f"{subdir}: no readable repodata.json ({exc})")
                continue
            if listed != set(records):
                problems.append(
                    f"{subdir}: repodata.json lists {len(listed)} files, upstream {len(records)}"
                )
    return problems


@dataclass(frozen=True)
class Traffic:
    """What the server sent while one tool ran (the same accounting for every tool)."""

    package_files: int
    body_bytes: int
    requests: int


def traffic(server: UpstreamServer) -> Traffic:
    log = server.requests
    files = sum(1 for r in log if r.status == 200 and r.match_path.endswith(PACKAGE_SUFFIXES))
    return Traffic(files, sum(r.body_bytes_sent for r in log), len(log))


# -- one round --------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    traffic: Traffic | None = None
    max_rss_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


Samples = dict[str, list[Sample]]

FULL_SYNC = "mirror sync, full (CLI)"
NOOP_CLI = "mirror sync, no-op (CLI)"
NOOP_INPROC = "mirror sync, no-op (in-process run_sync)"
BARE = "bare httpx fetch, 8 threads (subprocess)"
BARE_INNER = "bare httpx fetch, excluding interpreter start-up"
BARE_FSYNC = "bare httpx fetch + fsync per file (subprocess)"


def conda_mirror_row(threads: int) -> str:
    return f"conda-mirror 0.10.0 --num-threads {threads} (2 runs: linux-64, noarch)"


@dataclass(frozen=True)
class Bench:
    server: UpstreamServer
    channel: Channel
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.server.url}/{CHANNEL}"


def _require(run: ChildRun, what: str) -> None:
    if run.returncode != 0 or run.timed_out:
        tail = "\n".join(run.output().splitlines()[-20:])
        raise SystemExit(f"{what} failed (exit {run.returncode}); see {run.log}:\n{tail}")


def run_mirror(bench: Bench, out: Path, samples: Samples) -> list[str]:
    """Full sync, then the no-op resync as a CLI and in-process."""
    from mirror.config import load_config
    from mirror.sync.run import SyncOptions, run_sync

    config = out / "mirror.yaml"
    config.write_text(
        f"root: {out / 'channels'}\nstate_dir: {out / 'state'}\nworkers: {WORKERS}\n"
        f"channels:\n  bench:\n    upstream: {bench.url}\n    subdirs: [{', '.join(SUBDIRS)}]\n"
    )
    cmd = [PYTHON, "-m", "mirror", "sync", "--config", str(config)]
    bench.server.clear_log()
    full = run_child(cmd, out / "full.log", env=bench.env)
    _require(full, "mirror sync (full)")
    samples[FULL_SYNC].append(
        Sample(
            full.seconds,
            traffic(bench.server),
            full.max_rss_bytes,
            check_tree(out / "channels" / "bench", bench.channel, published=True),
        )
    )
    bench.server.clear_log()
    noop = run_child(cmd, out / "noop.log", env=bench.env)
    _require(noop, "mirror sync (no-op)")
    noop_traffic = traffic(bench.server)
    problems = (
        [f"downloaded {noop_traffic.package_files} files"] if noop_traffic.package_files else []
    )
    samples[NOOP_CLI].append(Sample(noop.seconds, noop_traffic, noop.max_rss_bytes, problems))

    bench.server.clear_log()
    start = time.perf_counter()
    report = run_sync(load_config(config), SyncOptions())
    seconds = time.perf_counter() - start
    inproc_traffic = traffic(bench.server)
    problems = [f"{s.subdir}: {s.outcome}" for s in report.subdirs if s.outcome != "unchanged"]
    if inproc_traffic.package_files:
        problems.append(f"downloaded {inproc_traffic.package_files} files")
    samples[NOOP_INPROC].append(Sample(seconds, inproc_traffic, problems=problems))
    return [FULL_SYNC, NOOP_CLI, NOOP_INPROC]


def run_conda_mirror(bench: Bench, out: Path, samples: Samples, threads: int) -> list[str]:
    """conda-mirror takes one --platform per run; a user mirroring two subdirs runs it twice.
    Its --num-threads only parallelises validation, with a new multiprocessing pool every 15
    downloads; downloads are always sequential on one requests.Session. So 8 is the "same
    workers" setting, and 1 is its fastest: both are measured."""
    target = out / "target"
    temp = out / "tmp"
    temp.mkdir(parents=True)
    bench.server.clear_log()
    seconds = 0.0
    rss = 0
    for subdir in SUBDIRS:
        run = run_child(
            [
                CONDA_MIRROR, "--upstream-channel", bench.url, "--target-directory", str(target),
                "--temp-directory", str(temp), "--platform", subdir,
                "--num-threads", str(threads), "--no-progress",
            ],
            out / f"{subdir}.log",
            env=bench.env,
        )  # fmt: skip
        _require(run, f"conda-mirror --platform {subdir}")
        seconds += run.seconds
        rss = max(rss, run.max_rss_bytes)
    problems = check_tree(target, bench.channel, published=True)
    row = conda_mirror_row(threads)
    samples.setdefault(row, []).append(Sample(seconds, traffic(bench.server), rss, problems))
    return [row]


def run_bare(bench: Bench, out: Path, samples: Samples, *, fsync: bool) -> list[str]:
    cmd = [
        PYTHON, "-m", "tests.bench.benchlib", "bare-fetch", "--channel", bench.url,
        "--dest", str(out / "target"), "--workers", str(WORKERS),
        *[arg for s in SUBDIRS for arg in ("--subdir", s)],
    ]  # fmt: skip
    if fsync:
        cmd.append("--fsync")
    bench.server.clear_log()
    run = run_child(cmd, out / "bare.log", env=bench.env)
    _require(run, "bare fetch")
    inner = last_json_line(run.output())
    problems = check_tree(out / "target", bench.channel, published=False) + inner["errors"]
    row = BARE_FSYNC if fsync else BARE
    samples[row].append(Sample(run.seconds, traffic(bench.server), run.max_rss_bytes, problems))
    if not fsync:
        samples[BARE_INNER].append(Sample(inner["seconds"]))
    return [row, BARE_INNER] if not fsync else [row]


# -- report ----------------------------------------------------------------------------------


def report(
    samples: Samples, sizes: Sizes, channel: Channel, cm_threads: list[int]
) -> dict[str, Any]:
    summaries = {row: Summary.of(s.seconds for s in runs) for row, runs in samples.items()}
    full = summaries[FULL_SYNC].median
    bare = summaries[BARE].median
    rows = []
    for row, runs in samples.items():
        summary = summaries[row]
        last = runs[-1] if runs else None
        t = last.traffic if last else None
        problems = sorted({p for s in runs for p in s.problems})
        rss = max((s.max_rss_bytes for s in runs), default=0)
        rows.append(
            [
                row,
                fmt_s(summary.median),
                f"{fmt_s(summary.minimum)} / {fmt_s(summary.maximum)}",
                fmt_ratio(summary.median / full),
                fmt_ratio(summary.median / bare),
                t.package_files if t else "",
                fmt_mb(t.body_bytes) if t else "",
                fmt_mb(rss) if rss else "",
                "; ".join(problems) if problems else "ok",
            ]
        )
    files = sum(len(r) for r in channel.values())
    total = sum(rec["size"] for r in channel.values() for rec in r.values())
    n = summaries[FULL_SYNC].n
    print(
        f"\n### mirror sync vs conda-mirror vs bare fetch: {files} packages, "
        f"{fmt_mb(total)} MB, {n} rounds (medians; ratios are median / median)\n"
    )
    headers = [
        "tool", "median s", "min / max s", "vs mirror full", "vs bare fetch",
        "files", "MB sent", "peak RSS MB", "check",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    same = WORKERS if WORKERS in cm_threads else cm_threads[0]
    cm = summaries[conda_mirror_row(same)].median
    cm_best = min(summaries[conda_mirror_row(t)].median for t in cm_threads)
    targets = [
        (
            f"mirror full sync >= 10x faster than conda-mirror --num-threads {same}",
            cm / full,
            cm / full >= 10,
        ),
        (
            "mirror full sync >= 10x faster than conda-mirror at its fastest setting",
            cm_best / full,
            cm_best / full >= 10,
        ),
        ("mirror full sync within 2x of the bare fetch", full / bare, full / bare <= 2),
        (
            "no-op resync (CLI) < 0.2 s",
            summaries[NOOP_CLI].median,
            summaries[NOOP_CLI].median < 0.2,
        ),
        (
            "no-op resync (in-process) < 0.2 s",
            summaries[NOOP_INPROC].median,
            summaries[NOOP_INPROC].median < 0.2,
        ),
    ]
    print("\n| target | measured | met |\n| --- | ---: | --- |")
    for text, value, met in targets:
        print(f"| {text} | {value:.3f} | {'yes' if met else 'NO'} |")
    return {
        "sizes": asdict(sizes),
        "files": files,
        "bytes": total,
        "rows": rows_json(samples, summaries),
        "targets": [{"target": t, "value": v, "met": m} for t, v, m in targets],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.packages} packages")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument(
        "--conda-mirror-threads", default=f"{WORKERS},1", metavar="N[,N...]",
        help="conda-mirror --num-threads settings to run (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep each round's target trees")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every upstream response by this much, like a remote upstream's round trip",
    )
    args = parser.parse_args(argv)
    if not Path(CONDA_MIRROR).exists():
        raise SystemExit("conda-mirror is missing: pip install conda-mirror==0.10.0")
    sizes = QUICK if args.quick else FULL
    cm_threads = [int(t) for t in args.conda_mirror_threads.split(",")]
    workdir = args.workdir.resolve() / "sync"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base, channel = ensure_upstream(workdir, sizes, SEED)
    rows = [FULL_SYNC, NOOP_CLI, NOOP_INPROC, *map(conda_mirror_row, cm_threads), BARE,
            BARE_INNER, BARE_FSYNC]  # fmt: skip
    samples: Samples = {row: [] for row in rows}
    with UpstreamServer(base, latency_s=args.latency_ms / 1000) as server:
        bench = Bench(server, channel, child_env())
        paths = [f"/{CHANNEL}/{s}/{fn}" for s, records in channel.items() for fn in records]
        paths += [
            f"/{CHANNEL}/{s}/{v}" for s in SUBDIRS for v in ("repodata.json", "repodata.json.zst")
        ]
        warm_server(server.url, paths)
        tools: list[tuple[str, Callable[[Bench, Path, Samples], list[str]]]] = [
            ("mirror", run_mirror),
            *[(f"conda-mirror-{t}", partial(run_conda_mirror, threads=t)) for t in cm_threads],
            ("bare", partial(run_bare, fsync=False)),
            ("bare-fsync", partial(run_bare, fsync=True)),
        ]
        for round_no in range(args.rounds):
            for name, tool in rotated(tools, round_no):
                out = workdir / "runs" / f"round-{round_no}" / name
                if out.exists():
                    shutil.rmtree(out)
                out.mkdir(parents=True)
                done = [
                    f"{row}: {samples[row][-1].seconds:.3f} s" for row in tool(bench, out, samples)
                ]
                print(f"round {round_no + 1}/{args.rounds}: " + "; ".join(done), flush=True)
                if not args.keep:
                    shutil.rmtree(out)
        if server.errors:
            print(f"server errors: {server.errors[:3]}", file=sys.stderr)
    results = report(samples, sizes, channel, cm_threads)
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        results["wall_seconds"] = elapsed
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
