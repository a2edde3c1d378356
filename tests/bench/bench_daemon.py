"""Benchmark: drop-to-visible latency of the daemon on a 20,000-package subdir, and a burst.

1. A local channel of N real packages (default 20,000, linux-64) is indexed once with
   `mirror index`; then `mirror daemon` runs on it with a drop folder.
2. Single drops, one at a time: each package is written to the drop folder and closed; the
   time from close to the file being named in BOTH repodata.json and the shard index is
   measured from outside (polling the published files). p50 / p90 / p99 / max.
3. A burst: 1,000 files renamed into the drop folder at once; the time until all are
   published, whether any was lost, and how many index runs it took (from /metrics).

Run from the repository root:
    python -m tests.bench.bench_daemon [--packages 20000] [--drops 40] [--burst 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import yaml
import zstandard

from tests.support.builder import PackageSpec, build_package, package_bytes
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for

CHANNEL = "local"
SUBDIR = "linux-64"


def build_tree(root: Path, packages: int) -> None:
    marker = root / f".built-{packages}"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    subdir = root / "tree" / CHANNEL / SUBDIR
    subdir.mkdir(parents=True)
    for i in range(packages):
        name = f"pkg{i // 8:05d}"
        build_package(PackageSpec(name, f"1.{i % 8}", build="h0_0", subdir=SUBDIR), subdir)
    marker.write_text("ok")


def index_once(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mirror", "index", str(root / "tree" / CHANNEL), "--state-dir",
         str(root / "state"), "--log-level", "WARNING"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def published(subdir: Path) -> tuple[bytes, set[str]]:
    repodata = (subdir / "repodata.json").read_bytes()
    raw = (subdir / "repodata_shards.msgpack.zst").read_bytes()
    index = msgspec.msgpack.decode(zstandard.ZstdDecompressor().stream_reader(raw).read())
    return repodata, set(index["shards"])


def visible(subdir: Path, filename: str, name: str) -> bool:
    repodata, shards = published(subdir)
    return f'"{filename}"'.encode() in repodata and name in shards


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packages", type=int, default=20_000)
    parser.add_argument("--drops", type=int, default=40)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench/daemon"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    root = args.workdir.resolve()
    build_tree(root, args.packages)
    run = root / "run"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(root / "tree", run / "tree", copy_function=os.link)
    index_seconds = index_once(run)
    (run / "drops").mkdir()
    port = free_port()
    config = run / "mirror.yaml"
    config.write_text(yaml.safe_dump({
        "root": "tree", "state_dir": "state", "metrics": {"listen": f"127.0.0.1:{port}"},
        "watch": {"settle_s": 1.0, "debounce_s": 0.05},
        "channels": {CHANNEL: {"subdirs": [SUBDIR, "noarch"], "drop_folders": ["drops"]}},
    }))  # fmt: skip
    subdir = run / "tree" / CHANNEL / SUBDIR
    results: dict[str, object] = {"packages": args.packages, "index_seconds": index_seconds}
    with DaemonProcess(config, run / "daemon.log", port) as daemon:
        daemon.start()
        wait_for(lambda: daemon.metric("conda_mirror_published_packages", channel=CHANNEL,
                                       subdir=SUBDIR) >= args.packages, timeout=300)  # fmt: skip
        latencies = []
        for i in range(args.drops):
            spec = PackageSpec(f"dropped{i:04d}", "1.0", build="h0_0", subdir=SUBDIR)
            data = package_bytes(spec)
            path = run / "drops" / spec.filename
            with path.open("wb") as handle:
                handle.write(data)
            closed = time.perf_counter()
            wait_for(lambda s=spec: visible(subdir, s.filename, s.name), timeout=60, interval=0.002)
            latencies.append(time.perf_counter() - closed)
        runs_before = daemon.metric("conda_mirror_index_duration_seconds_count", channel=CHANNEL)
        staging = run / "staging"
        staging.mkdir()
        burst = [PackageSpec(f"burst{i:05d}", "1.0", build="h0_0", subdir=SUBDIR)
                 for i in range(args.burst)]  # fmt: skip
        for spec in burst:
            (staging / spec.filename).write_bytes(package_bytes(spec))
        started = time.perf_counter()
        for spec in burst:
            os.replace(staging / spec.filename, run / "drops" / spec.filename)
        wanted = {f'"{s.filename}"'.encode() for s in burst}

        def all_published() -> bool:
            repodata, _ = published(subdir)
            return all(w in repodata for w in wanted)

        wait_for(all_published, timeout=600, interval=0.05)
        burst_seconds = time.perf_counter() - started
        runs = daemon.metric("conda_mirror_index_duration_seconds_count", channel=CHANNEL)
        lost = [s.filename for s in burst if not (subdir / s.filename).exists()]
        code, stop_seconds = daemon.stop()
    results.update(
        drop_p50=statistics.median(latencies), drop_p90=percentile(latencies, 0.9),
        drop_p99=percentile(latencies, 0.99), drop_max=max(latencies), drops=len(latencies),
        burst=args.burst, burst_seconds=burst_seconds, burst_index_runs=runs - runs_before,
        burst_lost=len(lost), stop_seconds=stop_seconds, exit_code=code,
    )  # fmt: skip
    print(f"### daemon: drop-to-visible on a {args.packages:,}-package {SUBDIR}\n")
    print("| measurement | value |\n| --- | ---: |")
    print(f"| initial `mirror index` of the tree | {index_seconds:.2f} s |")
    for key in ("drop_p50", "drop_p90", "drop_p99", "drop_max"):
        print(f"| single drop, close -> in repodata.json and shard index, {key[5:]} "
              f"({len(latencies)} drops) | {results[key]:.3f} s |")  # fmt: skip
    print(f"| {args.burst:,} files at once: all published | {burst_seconds:.2f} s |")
    print(f"| {args.burst:,} files at once: index runs | {runs - runs_before:.0f} |")
    print(f"| {args.burst:,} files at once: lost | {len(lost)} |")
    print(f"| SIGTERM to exit | {stop_seconds:.2f} s (exit {code}) |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
