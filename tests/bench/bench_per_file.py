"""Benchmark: the work `mirror sync` does per file, against a durable bare fetch, over loopback.

With an upstream that answers at once, what is left of a sync's time is the work per file on
this side. Two workloads, each bench_sync.py's generated channel with only linux-64 mirrored
(built once and cached under --workdir):

  - small: 674 files of 5-200 KB (the channel of bench_sync.py and bench_latency.py);
  - 100k: 674 files of ~100 kB (the same generator with a fixed payload size).

Served by tests.support.upstream_server.UpstreamServer on 127.0.0.1, no latency. Compared,
each into a fresh target, alternating the order every round:

  - `mirror sync` with default settings, as a child process (interpreter start and imports
    included);
  - the durable bare fetch (tests/bench/durable_fetch.py: threads with one http.client
    connection each, GET + sha256 + write, one os.sync() at the end), as a child process;
  - both again inside one warm child process (imports done, each run once before): the time
    of the run_sync() call against the time of the bare function, and within them the
    download step alone (mirror's Transfer.run: fetch, verify, install, make durable, record
    in the catalog; the bare fetch's file loop and its os.sync()), which leaves out what is
    paid once per sync (repodata, publishing the index). The download step is the per-file
    work the target is about; the whole-command figures add the interpreter start and
    imports of each (~0.4 s for mirror, ~0.05 s for the bare fetch).

The bare fetch uses as many threads as mirror ended up using: the most requests the server
had in flight during a sync, the median over three calibration syncs before the rounds
(--threads overrides it). The
server is in this process; every client is a child, so none shares its GIL. Every tree is
checked (all files with upstream's sha256; mirror's repodata.json listing exactly them).

Run from the repository root:
    python -m tests.bench.bench_per_file [--rounds 5] [--workloads small,100k]
                                         [--threads N] [--workdir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.bench.bench_sync import CHANNEL, SEED, Channel, Sizes, check_tree, ensure_upstream
from tests.bench.benchlib import (
    PYTHON,
    ChildRun,
    Sample,
    Samples,
    Summary,
    child_env,
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
from tests.bench.durable_fetch import write_config
from tests.support.upstream_server import UpstreamServer

SUBDIR = "linux-64"
PACKAGES = 986  # of which 674 are linux-64
WORKLOADS = {
    "small": (Sizes(PACKAGES), 1.3),
    "100k": (Sizes(PACKAGES, 100_000, 100_000), 1.2),
}
MIRROR_CLI = "mirror sync (whole command)"
BARE_CLI = "durable bare fetch (whole command)"
MIRROR_WARM = "mirror run_sync() in a warm process"
BARE_WARM = "durable bare fetch in a warm process"
MIRROR_STEP = "mirror's download step (Transfer.run), warm"
BARE_STEP = "durable bare fetch's file loop + sync, warm"
ROWS = (MIRROR_CLI, BARE_CLI, MIRROR_WARM, BARE_WARM, MIRROR_STEP, BARE_STEP)
# each row against the bare fetch measured the same way
PAIRS = {
    MIRROR_CLI: BARE_CLI, BARE_CLI: BARE_CLI, MIRROR_WARM: BARE_WARM, BARE_WARM: BARE_WARM,
    MIRROR_STEP: BARE_STEP, BARE_STEP: BARE_STEP,
}  # fmt: skip
MEASURES = (
    ("whole command", MIRROR_CLI, BARE_CLI),
    ("whole sync, warm process", MIRROR_WARM, BARE_WARM),
    ("download step, warm process", MIRROR_STEP, BARE_STEP),
)
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Bench:
    server: UpstreamServer
    channel: Channel
    threads: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"{self.server.url}/{CHANNEL}"

    @property
    def expected(self) -> Channel:
        return {SUBDIR: self.channel[SUBDIR]}


def _require(run: ChildRun, what: str) -> None:
    if run.returncode != 0 or run.timed_out:
        tail = "\n".join(run.output().splitlines()[-20:])
        raise SystemExit(f"{what} failed (exit {run.returncode}); see {run.log}:\n{tail}")


def run_mirror_cli(bench: Bench, out: Path, samples: Samples) -> None:
    config = write_config(out, bench.url, SUBDIR)
    bench.server.clear_log()
    run = run_child(
        [PYTHON, "-m", "mirror", "sync", "--config", str(config)],
        out / "sync.log",
        env=child_env(),
        timeout=TIMEOUT_S,
    )
    _require(run, "mirror sync")
    problems = check_tree(out / "channels" / "bench", bench.expected, published=True)
    extra = {"peak_in_flight": bench.server.peak_in_flight}
    samples[MIRROR_CLI].append(Sample(run.seconds, run.max_rss_bytes, problems, extra))


def run_bare_cli(bench: Bench, out: Path, samples: Samples) -> None:
    bench.server.clear_log()
    run = run_child(
        [
            PYTHON, "-m", "tests.bench.durable_fetch", "bare", "--url", bench.url,
            "--subdir", SUBDIR, "--dest", str(out / "target"), "--threads", str(bench.threads),
        ],
        out / "bare.log",
        env=child_env(),
        timeout=TIMEOUT_S,
    )  # fmt: skip
    _require(run, "durable bare fetch")
    problems = check_tree(out / "target", bench.expected, published=False)
    problems += last_json_line(run.output())["errors"]
    extra = {"peak_in_flight": bench.server.peak_in_flight}
    samples[BARE_CLI].append(Sample(run.seconds, run.max_rss_bytes, problems, extra))


def run_warm(bench: Bench, out: Path, samples: Samples, order: list[str]) -> None:
    run = run_child(
        [
            PYTHON, "-m", "tests.bench.durable_fetch", "warm", "--url", bench.url,
            "--subdir", SUBDIR, "--config-dir", str(out), "--threads", str(bench.threads),
            "--order", ",".join(order),
        ],
        out.with_suffix(".log"),
        env=child_env(),
        timeout=TIMEOUT_S,
    )  # fmt: skip
    _require(run, "warm process")
    results = last_json_line(run.output())
    mirror, bare = results["mirror"], results["bare"]
    problems = check_tree(out / "mirror" / "channels" / "bench", bench.expected, published=True)
    problems += mirror["errors"]
    samples[MIRROR_WARM].append(Sample(mirror["seconds"], problems=problems))
    samples[MIRROR_STEP].append(Sample(mirror["transfer_seconds"], problems=problems))
    problems = check_tree(out / "bare" / "target", bench.expected, published=False)
    problems += bare["errors"]
    samples[BARE_WARM].append(Sample(bare["seconds"], problems=problems))
    samples[BARE_STEP].append(Sample(bare["transfer_seconds"], problems=problems))


CALIBRATION_RUNS = 3


def calibrate(server: UpstreamServer, channel: Channel, workdir: Path) -> int:
    """How many requests mirror has in flight at most, the median over a few syncs before the
    rounds (one run's peak is noisy on a shared machine; they also warm the page cache)."""
    bench = Bench(server, channel, 0, workdir)
    samples: Samples = {MIRROR_CLI: []}
    out = workdir / "calibrate"
    for _ in range(CALIBRATION_RUNS):
        shutil.rmtree(out, ignore_errors=True)
        run_mirror_cli(bench, out, samples)
    shutil.rmtree(out)
    return int(Summary.of(s.extra["peak_in_flight"] for s in samples[MIRROR_CLI]).median)


def run_workload(
    name: str, sizes: Sizes, args: argparse.Namespace, workdir: Path
) -> tuple[Samples, int, int]:
    """All rounds of one workload: (samples, files, bare threads)."""
    base, channel = ensure_upstream(workdir, sizes, SEED)
    samples: Samples = {row: [] for row in ROWS}
    with UpstreamServer(base) as server:
        files = [f"/{CHANNEL}/{SUBDIR}/{fn}" for fn in channel[SUBDIR]]
        warm_server(server.url, [*files, f"/{CHANNEL}/{SUBDIR}/repodata.json"])
        runs = workdir / "per-file-runs" / name
        threads = args.threads or calibrate(server, channel, runs)
        print(f"{name}: {len(files)} files; the bare fetch uses {threads} threads", flush=True)
        bench = Bench(server, channel, threads, runs)
        for round_no in range(args.rounds):
            steps = rotated(["mirror-cli", "bare-cli", "warm"], round_no)
            for step in steps:
                out = runs / f"round-{round_no}" / step
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                if step == "mirror-cli":
                    run_mirror_cli(bench, out, samples)
                elif step == "bare-cli":
                    run_bare_cli(bench, out, samples)
                else:
                    run_warm(bench, out, samples, rotated(["mirror", "bare"], round_no))
                shutil.rmtree(out)
                os.sync()  # deleting the tree is not the next contender's to write
            done = ", ".join(fmt_s(samples[row][-1].seconds) for row in ROWS)
            print(f"{name} round {round_no + 1}/{args.rounds} (s, rows in table order): {done}")
        if server.errors:
            print(f"server errors: {server.errors[:3]}", file=sys.stderr)
    return samples, len(files), threads


def report(name: str, samples: Samples, files: int, threads: int, target: float) -> dict[str, Any]:
    summaries = {row: Summary.of(s.seconds for s in runs) for row, runs in samples.items()}
    rows = []
    for row, runs in samples.items():
        summary, bare = summaries[row], summaries[PAIRS[row]]
        peaks = sorted(int(s.extra.get("peak_in_flight", 0)) for s in runs)
        problems = sorted({p for s in runs for p in s.problems})
        rows.append(
            [
                row,
                fmt_s(summary.median),
                f"{fmt_s(summary.minimum)} / {fmt_s(summary.maximum)}",
                fmt_ratio(summary.median / bare.median),
                f"{(summary.median - bare.median) / files * 1000:+.2f}",
                f"{peaks[0]}-{peaks[-1]}" if peaks and peaks[-1] else "",
                "; ".join(problems) if problems else "ok",
            ]
        )
    n = summaries[MIRROR_CLI].n
    print(
        f"\n### {name}: {files} linux-64 files from loopback, no latency; bare fetch with "
        f"{threads} threads; {n} rounds (medians; ratio = the row's median / the bare fetch's "
        "median measured the same way)\n"
    )
    headers = ["contender", "median s", "min / max s", "vs bare", "ms per file vs bare",
               "peak in flight", "check"]  # fmt: skip
    print(markdown_table(headers, rows))
    targets = []
    for what, mirror, bare in MEASURES:
        ratio = summaries[mirror].median / summaries[bare].median
        # each round's two runs were close in time: their ratio shrugs off slow drifts in load
        rounds = zip(samples[mirror], samples[bare], strict=True)
        paired = Summary.of(m.seconds / b.seconds for m, b in rounds)
        targets.append({"measure": what, "ratio": ratio, "paired": asdict(paired),
                        "target": target, "met": ratio <= target})  # fmt: skip
    print(
        "\n| measure | median / median | median of round ratios (min / max) | target | met |"
        "\n| --- | ---: | ---: | ---: | --- |"
    )
    for t in targets:
        paired = t["paired"]
        print(f"| {t['measure']} | {t['ratio']:.2f}x | {paired['median']:.2f}x "
              f"({paired['minimum']:.2f} / {paired['maximum']:.2f}) | {target:.1f}x | "
              f"{'yes' if t['met'] else 'NO'} |")  # fmt: skip
    return {
        "files": files,
        "threads": threads,
        "rows": rows_json(samples, summaries),
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_per_file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="%(default)s")
    parser.add_argument("--threads", type=int, default=0, help="bare fetch threads (0: auto)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve() / "sync"  # shares bench_sync's cache of generated channels
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for name in args.workloads.split(","):
        sizes, target = WORKLOADS[name]
        samples, files, threads = run_workload(name, sizes, args, workdir)
        results[name] = report(name, samples, files, threads, target)
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started
    print(
        f"\nbenchmark wall time: {elapsed:.0f} s; load average (1, 5, 15 min) before "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
        f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {os.cpu_count()} cores"
    )
    if args.json:
        results.update(wall_seconds=elapsed, load_before=load_before, load_after=load_after)
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
