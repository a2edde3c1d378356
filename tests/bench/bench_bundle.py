"""Benchmark: `mirror export` and `mirror import` throughput against a plain `cp -r`.

One channel folder of ~2 GB (--size-mb) of package files, built once and cached under --workdir:
linux-64 (70%) and noarch (30%), --files files named `pkgNNNN-1.0-h0_0.conda` of random
(incompressible) bytes, sizes lognormal between 10 kB and 50 MB, plus a repodata.json per subdir
listing each with its size and sha256 (the exporter does not parse repodata; it is there to make
the tree look like a channel). The source config has that one channel, without an upstream.

Compared in one run, each a child process (peak RSS from /usr/bin/time), the order rotated
every round, medians over --rounds:
  - `cp -r TREE/c DEST` (the floor; it writes into the page cache and never waits for the disk),
    and the same plus the `sync` that makes its copy durable (timed right after it);
  - `mirror export --full --out X` (the snapshot it cuts from is taken, and timed, once before
    the rounds with `mirror snapshots`, so the rounds time the export alone; it reads and
    hashes every file, writes the tar part(s), hashes them and fsyncs);
  - the same with `--split-size 700MB` (3 parts): splitting should cost nothing;
  - `mirror import X` into a fresh offline tree (new config, state and root every round), from
    a bundle exported once before the rounds; it checks every part and file hash, copies each
    file (fsync per file) and snapshots the result.

Page cache: before every measurement everything is synced and, when /proc/sys/vm/drop_caches is
writable (root), caches are dropped, so every tool reads its input cold from disk; otherwise
(or with --warm) the source tree and the import bundle are read once before every measurement
so every tool reads from memory. The header says which.

Checks: every imported tree equals the source byte for byte (the sha256 of every file, and no
file more or less); every bundle's manifest lists every source file; every `cp -r` copy has
every file at its size.

Run from the repository root:
    python -m tests.bench.bench_bundle [--rounds 3] [--workdir DIR] [--size-mb 2000]
        [--files 2000] [--no-split] [--warm] [--profile] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.benchlib import (
    PYTHON,
    ChildRun,
    Sample,
    Samples,
    Summary,
    child_env,
    fmt_mb,
    fmt_ratio,
    fmt_s,
    markdown_table,
    rotated,
    rows_json,
    run_child,
    write_json,
)

SEED = 20_250_301
CHANNEL = "c"
SUBDIRS = ("linux-64", "noarch")
MIN_SIZE, MAX_SIZE = 10_000, 50_000_000
SPLIT = "700MB"
TARGET_RATIO = 1.5
DROP_CACHES = Path("/proc/sys/vm/drop_caches")

Tree = dict[str, tuple[int, str]]  # channel-relative path -> size, sha256


# -- the source tree ----------------------------------------------------------------------------


def file_sizes(count: int, total: int, seed: int) -> list[int]:
    """`count` lognormal sizes (sigma 1.6) within [MIN_SIZE, MAX_SIZE], scaled to ~`total`."""
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0.0, 1.6) for _ in range(count)]
    scale = total / sum(raw)
    for _ in range(20):  # clipping moves the sum: rescale until it settles
        sizes = [min(MAX_SIZE, max(MIN_SIZE, int(r * scale))) for r in raw]
        scale *= total / sum(sizes)
    return sizes


def ensure_tree(workdir: Path, files: int, total: int) -> tuple[Path, Tree]:
    """The channel folder `<base>/tree/c`, built once; its files' sizes and sha256."""
    base = workdir / f"source-{files}-{total}-{SEED}"
    marker = base / "tree.json"
    if marker.exists():
        return base, {p: (s, h) for p, (s, h) in json.loads(marker.read_text()).items()}
    if base.exists():
        shutil.rmtree(base)
    started = time.perf_counter()
    channel = base / "tree" / CHANNEL
    rng = random.Random(SEED)
    records: dict[str, dict[str, Any]] = {subdir: {} for subdir in SUBDIRS}
    tree: Tree = {}
    for index, size in enumerate(file_sizes(files, total, SEED)):
        subdir = "noarch" if rng.random() < 0.3 else "linux-64"
        name = f"pkg{index:04d}"
        filename = f"{name}-1.0-h0_0.conda"
        folder = channel / subdir
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(folder / filename, "wb") as out:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 22))
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        sha256 = digest.hexdigest()
        tree[f"{subdir}/{filename}"] = (size, sha256)
        records[subdir][filename] = {
            "name": name, "version": "1.0", "build": "h0_0", "build_number": 0,
            "depends": [] if subdir == "noarch" else ["libgcc-ng >=12"],
            "license": "MIT", "subdir": subdir, "size": size, "sha256": sha256,
            "timestamp": 1_700_000_000_000 + index * 60_000,
        }  # fmt: skip
    for subdir, packages in records.items():
        body = json.dumps(
            {
                "info": {"subdir": subdir},
                "packages": {},
                "packages.conda": dict(sorted(packages.items())),
                "removed": [],
                "repodata_version": 1,
            },
            indent=1,
            sort_keys=True,
        ).encode()
        (channel / subdir / "repodata.json").write_bytes(body)
        tree[f"{subdir}/repodata.json"] = (len(body), hashlib.sha256(body).hexdigest())
    marker.write_text(json.dumps(tree, sort_keys=True) + "\n")
    print(
        f"built source tree: {len(tree)} files, {fmt_mb(tree_bytes(tree))} MB in "
        f"{time.perf_counter() - started:.1f} s at {channel}",
        flush=True,
    )
    return base, tree


def tree_bytes(tree: Tree) -> int:
    return sum(size for size, _ in tree.values())


def write_config(folder: Path) -> Path:
    """A config whose root is `folder/tree` and state `folder/state`, one channel, no upstream."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "mirror.yaml"
    config.write_text(
        f"root: {folder / 'tree'}\nstate_dir: {folder / 'state'}\n"
        f"channels:\n  {CHANNEL}:\n    subdirs: [{', '.join(SUBDIRS)}]\n"
    )
    return config


# -- checks -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def listed(channel_dir: Path) -> dict[str, Path]:
    """Every file under a channel folder except dotfiles, by channel-relative path."""
    found = {}
    for path in channel_dir.rglob("*"):
        relative = path.relative_to(channel_dir)
        if path.is_file() and not any(p.startswith(".") for p in relative.parts):
            found[relative.as_posix()] = path
    return found


def check_copy(channel_dir: Path, tree: Tree, *, content: bool) -> list[str]:
    """What differs between a copied channel folder and the source: missing or extra files,
    wrong sizes and (with `content`) wrong sha256."""
    on_disk = listed(channel_dir)
    problems = []
    missing, extra = set(tree) - set(on_disk), set(on_disk) - set(tree)
    if missing:
        problems.append(f"{len(missing)} of {len(tree)} files missing")
    if extra:
        problems.append(f"{len(extra)} unexpected files")
    common = sorted(set(tree) & set(on_disk))
    wrong_size = [p for p in common if on_disk[p].stat().st_size != tree[p][0]]
    if wrong_size:
        problems.append(f"{len(wrong_size)} files of the wrong size")
    if content:
        bad = [p for p in common if sha256_file(on_disk[p]) != tree[p][1]]
        if bad:
            problems.append(f"{len(bad)} files with a wrong sha256")
    return problems


def check_bundle(bundle: Path, tree: Tree, parts: int | None) -> list[str]:
    try:
        manifest = json.loads((bundle / "manifest.json").read_bytes())
    except (OSError, ValueError) as exc:
        return [f"no readable manifest ({exc})"]
    files = {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]}
    expected = {f"{CHANNEL}/{p}": v for p, v in tree.items()}
    problems = [] if files == expected else ["the manifest does not list exactly the source"]
    if parts is not None and len(manifest["parts"]) != parts:
        problems.append(f"{len(manifest['parts'])} parts, expected {parts}")
    return problems


# -- page cache -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cache:
    drop: bool
    warm_paths: tuple[Path, ...]  # read before each measurement when not dropping

    def prepare(self) -> None:
        """Before every measurement: nothing dirty left over from the last one, and the same
        cache state for every tool (all cold, or all the inputs warm)."""
        os.sync()
        if self.drop:
            DROP_CACHES.write_text("3\n")
            return
        for root in self.warm_paths:
            for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
                if path.is_file():
                    with open(path, "rb") as handle:
                        while handle.read(1 << 22):
                            pass


def can_drop_caches() -> bool:
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


# -- measurements -----------------------------------------------------------------------------


CP = "cp -r (no fsync)"
CP_SYNC = "cp -r + sync (durable)"
EXPORT = "mirror export --full"
EXPORT_SPLIT = f"mirror export --full --split-size {SPLIT}"
IMPORT = "mirror import (fresh tree)"


@dataclass(frozen=True)
class Bench:
    base: Path  # the cached source: tree/ and (per run) state/
    source_config: Path
    import_bundle: Path  # exported once, imported every round
    tree: Tree
    runs: Path
    env: dict[str, str]
    cache: Cache

    def mirror(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "mirror", *args]


def _require(run: ChildRun, what: str) -> None:
    if run.returncode != 0 or run.timed_out:
        tail = "\n".join(run.output().splitlines()[-20:])
        raise SystemExit(f"{what} failed (exit {run.returncode}); see {run.log}:\n{tail}")


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def run_cp(bench: Bench, samples: Samples, round_no: int) -> list[str]:
    dest = _fresh(bench.runs / "cp")
    dest.mkdir(parents=True)
    bench.cache.prepare()
    cp = run_child(
        ["cp", "-r", str(bench.base / "tree" / CHANNEL), str(dest / CHANNEL)],
        bench.runs / "logs" / f"cp-{round_no}.log",
        env=bench.env,
    )
    _require(cp, "cp -r")
    sync = run_child(["sync"], bench.runs / "logs" / f"sync-{round_no}.log", env=bench.env)
    _require(sync, "sync")
    problems = check_copy(dest / CHANNEL, bench.tree, content=False)
    samples[CP].append(Sample(cp.seconds, cp.max_rss_bytes, problems))
    samples[CP_SYNC].append(Sample(cp.seconds + sync.seconds, cp.max_rss_bytes, problems))
    shutil.rmtree(dest)
    return [CP, CP_SYNC]


def run_export(bench: Bench, samples: Samples, round_no: int, *, split: bool) -> list[str]:
    row = EXPORT_SPLIT if split else EXPORT
    out = bench.runs / ("bundle-split" if split else "bundle")
    _fresh(out)
    cmd = bench.mirror("export", "--full", "--out", str(out), "--config", str(bench.source_config))
    if split:
        cmd += ["--split-size", SPLIT]
    bench.cache.prepare()
    run = run_child(cmd, bench.runs / "logs" / f"export-{split}-{round_no}.log", env=bench.env)
    _require(run, row)
    parts = math.ceil(tree_bytes(bench.tree) / 700e6) if split else 1
    samples[row].append(
        Sample(run.seconds, run.max_rss_bytes, check_bundle(out, bench.tree, parts))
    )
    shutil.rmtree(out)
    return [row]


def run_import(bench: Bench, samples: Samples, round_no: int) -> list[str]:
    offline = _fresh(bench.runs / "offline")
    config = write_config(offline)
    cmd = bench.mirror("import", str(bench.import_bundle), "--config", str(config))
    bench.cache.prepare()
    run = run_child(cmd, bench.runs / "logs" / f"import-{round_no}.log", env=bench.env)
    _require(run, "mirror import")
    problems = check_copy(offline / "tree" / CHANNEL, bench.tree, content=True)
    samples[IMPORT].append(Sample(run.seconds, run.max_rss_bytes, problems))
    shutil.rmtree(offline)
    return [IMPORT]


def profile(bench: Bench) -> None:
    """Export and import once each under cProfile (warm cache): where the time goes."""
    import pstats

    for what in ("export", "import"):
        out = _fresh(bench.runs / "profile-bundle") if what == "export" else None
        offline = _fresh(bench.runs / "profile-offline")
        if what == "export":
            args = ["export", "--full", "--out", str(out), "--config", str(bench.source_config)]
        else:
            args = ["import", str(bench.import_bundle), "--config", str(write_config(offline))]
        stats = bench.runs / f"{what}.prof"
        os.sync()
        run = run_child(
            [PYTHON, "-m", "tests.bench.benchlib", "profile-mirror", str(stats), *args],
            bench.runs / "logs" / f"profile-{what}.log",
            env=bench.env,
        )
        _require(run, f"profiled mirror {what}")
        print(f"\n### cProfile of `mirror {what}` ({run.seconds:.2f} s wall)\n```")
        pstats.Stats(str(stats)).sort_stats("tottime").print_stats(12)
        print("```")
        for path in (out, offline):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)


# -- report -----------------------------------------------------------------------------------


def report(samples: Samples, tree: Tree, snapshot_s: float, cold: bool) -> dict[str, Any]:
    total = tree_bytes(tree)
    summaries = {row: Summary.of(s.seconds for s in runs) for row, runs in samples.items()}
    cp = summaries[CP].median
    cp_sync = summaries[CP_SYNC].median
    rows = []
    for row, runs in samples.items():
        summary = summaries[row]
        problems = sorted({p for s in runs for p in s.problems})
        rss = max((s.max_rss_bytes for s in runs), default=0)
        rows.append(
            [
                row,
                fmt_s(summary.median),
                f"{fmt_s(summary.minimum)} / {fmt_s(summary.maximum)}",
                f"{total / 1e6 / summary.median:,.0f}",
                fmt_ratio(summary.median / cp),
                fmt_ratio(summary.median / cp_sync),
                fmt_mb(rss) if rss else "",
                "; ".join(problems) if problems else "ok",
            ]
        )
    n = summaries[CP].n
    cache = "caches dropped before each run (cold reads)" if cold else "inputs warm in page cache"
    print(
        f"\n### mirror export / import vs cp -r: {len(tree)} files, {fmt_mb(total)} MB, "
        f"{n} rounds, {cache} (medians; ratios are median / median)\n"
    )
    headers = [
        "tool", "median s", "min / max s", "MB/s", "vs cp -r", "vs cp -r + sync",
        "peak RSS MB", "check",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    print(
        f"\nsnapshot of the source, once before the rounds (`mirror snapshots`, cold): "
        f"{snapshot_s:.2f} s ({total / 1e6 / snapshot_s:,.0f} MB/s)"
    )
    targets = [
        (f"export within {TARGET_RATIO}x of cp -r", summaries[EXPORT].median / cp),
        (f"import within {TARGET_RATIO}x of cp -r", summaries[IMPORT].median / cp),
    ]
    if EXPORT_SPLIT in summaries:
        targets.append(
            (f"split export within {TARGET_RATIO}x of cp -r", summaries[EXPORT_SPLIT].median / cp)
        )
    print("\n| target | measured | met |\n| --- | ---: | --- |")
    for text, value in targets:
        print(f"| {text} | {fmt_ratio(value)} | {'yes' if value <= TARGET_RATIO else 'NO'} |")
    return {
        "files": len(tree),
        "bytes": total,
        "cold_cache": cold,
        "snapshot_seconds": snapshot_s,
        "rows": rows_json(samples, summaries),
        "targets": [{"target": t, "ratio": v, "met": v <= TARGET_RATIO} for t, v in targets],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench/bundle"))
    parser.add_argument("--size-mb", type=int, default=2000, help="total size of the tree")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--no-split", action="store_true", help="skip the --split-size export")
    parser.add_argument("--warm", action="store_true", help="do not drop caches, warm inputs")
    parser.add_argument("--profile", action="store_true", help="cProfile export and import once")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base, tree = ensure_tree(workdir, args.files, args.size_mb * 1_000_000)
    env = child_env()
    runs = _fresh(workdir / "runs")
    (runs / "logs").mkdir(parents=True)

    # the source's snapshot, taken anew (and timed) every run; then the bundle import reads
    source_config = write_config(base)
    shutil.rmtree(base / "state", ignore_errors=True)
    cold = not args.warm and can_drop_caches()
    import_bundle = runs / "import-bundle"
    cache = Cache(cold, (base / "tree", import_bundle))
    os.sync()
    if cold:
        DROP_CACHES.write_text("3\n")
    snap = run_child(
        [PYTHON, "-m", "mirror", "snapshots", "--config", str(source_config)],
        runs / "logs" / "snapshots.log",
        env=env,
    )
    _require(snap, "mirror snapshots")
    export = run_child(
        [PYTHON, "-m", "mirror", "export", "--full", "--out", str(import_bundle),
         "--config", str(source_config)],
        runs / "logs" / "import-bundle.log",
        env=env,
    )  # fmt: skip
    _require(export, "the export of the bundle to import")
    print(
        f"snapshot {snap.seconds:.2f} s; bundle to import written in {export.seconds:.2f} s; "
        f"page cache: {'dropped before each run' if cold else 'inputs warmed before each run'}",
        flush=True,
    )

    bench = Bench(base, source_config, import_bundle, tree, runs, env, cache)
    tools: list[tuple[str, Callable[[Bench, Samples, int], list[str]]]] = [
        ("cp", run_cp),
        ("export", lambda b, s, r: run_export(b, s, r, split=False)),
        ("import", run_import),
    ]
    rows = [CP, CP_SYNC, EXPORT, IMPORT]
    if not args.no_split:
        tools.insert(2, ("export-split", lambda b, s, r: run_export(b, s, r, split=True)))
        rows.insert(3, EXPORT_SPLIT)
    samples: Samples = {row: [] for row in rows}
    for round_no in range(args.rounds):
        for _, tool in rotated(tools, round_no):
            done = [
                f"{row}: {samples[row][-1].seconds:.2f} s" for row in tool(bench, samples, round_no)
            ]
            print(f"round {round_no + 1}/{args.rounds}: " + "; ".join(done), flush=True)
    results = report(samples, tree, snap.seconds, cold)
    if args.profile:
        profile(bench)
    shutil.rmtree(import_bundle, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        results["wall_seconds"] = elapsed
        write_json(args.json, results)
    subprocess.run(["sync"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
