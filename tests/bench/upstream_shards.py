"""Benchmark setup: give a generated conda-forge-sized upstream subdir CEP-16 shards, quickly.

`shard_generated_subdir(subdir_dir)` reads the subdir's repodata.json (bench_filter_large writes
500,000 records, ~350 MB), builds one shard per package name with our own writer
(mirror.core.shards.build_shard) in a process pool, writes the shards under `shards/` and the
index `repodata_shards.msgpack.zst` last. `update_shards` rewrites the shards of a few names and
the index, for an upstream change that touches them. Shards are named by their hash, so an
unchanged shard is never written again.

Run from the repository root to time it on a generated subdir (no packages are built):
    python -m tests.bench.upstream_shards [--quick] [--workdir DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mirror.core.records import name_from_filename, parse_repodata
from mirror.core.shards import (
    SHARD_INDEX_NAME,
    SHARDS_DIR,
    build_shard,
    build_shard_index,
    removed_by_name,
)
from tests.support.sharded_upstream import CREATED_AT

Records = list[tuple[str, bytes]]  # (file name, record JSON) of one package name
_CHUNK_NAMES = 500  # names per pool task: big enough to amortise pickling, small to balance


@dataclass(frozen=True)
class ShardedUpstream:
    """What `shard_generated_subdir` wrote and how long it took."""

    shards: dict[str, str]  # package name -> sha256 hex of its shard
    index_bytes: int
    shards_bytes: int
    written: int  # shard files new on disk
    seconds: float

    def summary(self) -> str:
        return (
            f"{len(self.shards):,} shards ({self.shards_bytes / 1e6:.1f} MB, "
            f"{self.written:,} new), index {self.index_bytes / 1e6:.2f} MB, in {self.seconds:.1f} s"
        )


def shard_generated_subdir(
    subdir_dir: Path, *, workers: int | None = None, data: bytes | None = None
) -> ShardedUpstream:
    """Shard `<subdir_dir>/repodata.json` (or `data`, its bytes already in memory)."""
    started = time.perf_counter()
    body = data if data is not None else (subdir_dir / "repodata.json").read_bytes()
    repodata = parse_repodata(body, source=str(subdir_dir / "repodata.json"))
    by_name: dict[str, Records] = {}
    for filename, (_, raw) in repodata.entries.items():
        by_name.setdefault(name_from_filename(filename) or "", []).append((filename, bytes(raw)))
    by_name.pop("", None)  # a file name that implies no package belongs to no shard
    removed = removed_by_name(msgspec.json.decode(repodata.top_level.get("removed", b"[]")))
    del repodata, body
    folder = subdir_dir / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        [(name, by_name[name], removed.get(name, [])) for name in chunk]
        for chunk in _chunks(sorted(by_name), _CHUNK_NAMES)
    ]
    shards: dict[str, str] = {}
    sizes = written = 0
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for results in pool.map(_write_shards, [folder] * len(jobs), jobs):
            for name, digest, size, new in results:
                shards[name] = digest
                sizes += size
                written += new
    index_bytes = _write_index(subdir_dir, shards)
    seconds = time.perf_counter() - started
    return ShardedUpstream(shards, index_bytes, sizes, written, seconds)


def update_shards(
    subdir_dir: Path,
    shards: Mapping[str, str],
    changed: Mapping[str, Records],
    removed: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """Rebuild the shards of the `changed` names (all their records; an empty list drops the
    name), write the new ones and then a new index. Returns the new name -> sha256 map."""
    folder = subdir_dir / SHARDS_DIR
    jobs = [(name, records, (removed or {}).get(name, [])) for name, records in changed.items()]
    new_map = dict(shards)
    for name, digest, _, _ in _write_shards(folder, [j for j in jobs if j[1]]):
        new_map[name] = digest
    for name, records, _ in jobs:
        if not records:
            new_map.pop(name, None)
    _write_index(subdir_dir, new_map)
    return new_map


def _write_shards(
    folder: Path, jobs: Iterable[tuple[str, Records, Sequence[str]]]
) -> list[tuple[str, str, int, bool]]:
    """(name, sha256, size, newly written) of each shard; runs in a pool worker."""
    out = []
    for name, records, removed in jobs:
        shard = build_shard(name, records, removed)
        target = folder / shard.filename
        try:
            new = target.stat().st_size != len(shard.data)  # a cut file from a killed run
        except FileNotFoundError:
            new = True
        if new:
            # written in place, not by rename (5x faster for 25,000 files here): no index names
            # a shard before it is complete, so no client can ask for it half-written
            target.write_bytes(shard.data)
        out.append((name, shard.sha256, len(shard.data), new))
    return out


def _write_index(subdir_dir: Path, shards: Mapping[str, str]) -> int:
    index = build_shard_index(subdir_dir.name, shards, CREATED_AT)
    _replace(subdir_dir / SHARD_INDEX_NAME, index)
    return len(index)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _replace(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def generate_repodata(subdir_dir: Path, names: int, per_name: int) -> None:
    """Only the repodata.json of bench_filter_large's generator (no packages are built)."""
    from tests.bench.bench_filter_large import SEED, SUBDIR, make_names, records_for

    rng = random.Random(SEED)
    all_names = make_names(names, rng)
    records = {fn: r for n in all_names for fn, r in records_for(n, rng, per_name, all_names)}
    doc = {
        "info": {"subdir": SUBDIR},
        "packages": {fn: r for fn, r in records.items() if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in records.items() if fn.endswith(".conda")},
        "removed": [],
        "repodata_version": 1,
    }
    subdir_dir.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(doc, order="sorted"), indent=2) + b"\n"
    (subdir_dir / "repodata.json").write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.upstream_shards")
    parser.add_argument("--quick", action="store_true", help="1,000 names instead of 25,000")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench/shards"))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    names = 1_000 if args.quick else 25_000
    subdir_dir = args.workdir.resolve() / f"gen-{names}x20" / "linux-64"
    if not (subdir_dir / "repodata.json").exists():
        started = time.perf_counter()
        generate_repodata(subdir_dir, names, 20)
        print(f"generated {names * 20:,} records in {time.perf_counter() - started:.1f} s")
    size = (subdir_dir / "repodata.json").stat().st_size
    print(f"repodata.json: {size / 1e6:.0f} MB")
    for attempt in ("first (every shard new)", "again (nothing new)"):
        result = shard_generated_subdir(subdir_dir, workers=args.workers)
        print(f"{attempt}: {result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
