"""Benchmark 3: `mirror index` vs rattler-index (py-rattler) vs conda-index, side by side.

Three scenarios, each tool in its own child process (peak RSS from /usr/bin/time), the order
rotated every round, medians over --rounds:

1. From scratch. Generated channels of real package files (tests.support.builder: .conda and
   .tar.bz2, linux-64 and noarch, --sizes packages; 8 builds per package name, 30% noarch
   python, 30% of linux-64 builds with run_exports; each holds a small text module of 1-30 KB
   of compressible words and, in linux-64, a 2-100 KB binary of random bytes, log-uniform:
   ~20 KB a file, 396 MB for 20,000). Every tool gets its own copy of the pristine channel:
   package files hard-linked (every tool only reads them; at the end the pristine folders must
   still hold exactly their files, each with its sha256), nothing else shared. Compared:
     - `mirror index PATH --state-dir FRESH` (defaults: repodata.json + .zst, CEP-16 shards,
       run_exports.json, channeldata.json), and once more without run_exports/channeldata
       (the outputs rattler-index writes);
     - rattler-index: py-rattler's `index_fs(PATH, write_zst=True, write_shards=True,
       force=True)` in `python -c` (an async function: asyncio.run);
     - conda-index: `python -m conda_index PATH --zst --write-shards --run-exports
       --channeldata --no-rss`. conda-index imports `conda.models.version.VersionOrder` and
       `conda.base.constants.PLATFORM_DIRECTORIES`; conda is not on PyPI, so when `conda`
       does not import, a two-module stand-in is written under --workdir and put on that
       child's PYTHONPATH only (VersionOrder on rattler's Version: it only orders versions
       for channeldata.json; conda's own platform list). Its row says so.
2. +1 package into an already-indexed subdir of the largest --sizes channel. Each tool starts
   every round from a copy of its own index of that channel (the last round of scenario 1:
   package files hard-linked, index files, caches and catalogs copied with their mtimes); a new
   version of an existing linux-64 package is written and closed, and then the tool runs: the
   time is the child's wall time, start-up included, from the closed file to repodata.json and
   the shard index both naming it. `mirror index PATH` (full scan), `mirror index PATH --file
   linux-64/NEW.conda` (targeted), rattler-index (`force=False`), conda-index (same flags).
   Start-up is reported apart: `python -c pass`, `import mirror.cli`, and the targeted run
   again in one process that times its imports and its work separately.
3. +1 package into a conda-forge-sized linux-64: --cf-records records (conda-forge-shaped, from
   bench_filter_large's generator) already in mirror's catalog. Built once, cached: one sparse
   placeholder file per record (os.truncate to the record's size, so it costs no disk blocks),
   inserted with Catalog.put_files as mirrored files (origin "mirror", the record's
   sha256/md5, the placeholder's size and mtime: exactly what `mirror sync` leaves), then
   publish_subdir and publish_channeldata write the full index once. Mirrored files whose
   stats did not change are never read again, so placeholders are indistinguishable from
   real files to `mirror index`. Each round drops one more real package (a new version of an
   existing name) and times `mirror index PATH --file linux-64/NEW.conda` and `mirror index
   PATH --subdir linux-64` (full scan: 500,000 stats + channeldata.json). The added packages
   accumulate (500,001, 500,002, ... records); the next invocation first takes them out again
   (untimed).

Every run is checked: repodata.json lists exactly the expected files with the right sha256 and
size (scenario 1) or the expected count plus the new file (2, 3), and the shard index names
the new package's shard, which exists and holds the new file.

Run from the repository root of a fixed checkout (other work must not change mirror/ under it):
    python -m tests.bench.bench_index [--rounds 3] [--workdir DIR] [--quick] [--json OUT]
        [--sizes 2000,20000] [--cf-records 500000] [--scenarios 1,2,3] [--no-conda-index]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from tests.bench.bench_filter_large import make_names, records_for
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
    last_json_line,
    markdown_table,
    rotated,
    run_child,
    write_json,
)
from tests.support.builder import PackageSpec, build_package

SEED = 20_260_301
GENERATOR = 1  # bump when the generated channels change shape
CHANNEL = "chan"  # the channel folder's name in every copy (mirror's catalog keys on it)
SUBDIRS = ("linux-64", "noarch")
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
BUILDS_PER_NAME = 8
SHARD_INDEX = "repodata_shards.msgpack.zst"
TIMEOUT_S = 1800

_WORDS = (
    "import", "def", "return", "self", "value", "array", "config", "parse", "for", "in", "if",
    "else", "None", "True", "False", "class", "data", "path", "with", "open", "result", "yield",
)  # fmt: skip
_BASE_DEPENDS = ("libgcc-ng >=12", "libstdcxx-ng >=12", "__glibc >=2.17,<3.0.a0",
                 "libzlib >=1.2.13,<2.0a0", "openssl >=3.2.1,<4.0a0")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    cf_records: int


FULL = Plan((2_000, 20_000), 500_000)
QUICK = Plan((200, 2_000), 20_000)

Records = dict[str, dict[str, dict[str, Any]]]  # subdir -> filename -> record


# -- generated channels of real packages -----------------------------------------------------


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def spec_for(index: int, names: Sequence[str], seed: int) -> PackageSpec:
    """Package number `index` of a channel, the same every run."""
    rng = random.Random(f"{seed}:{index}")
    name = names[index // BUILDS_PER_NAME]
    noarch = zlib.crc32(name.encode()) % 10 < 3
    version = f"{index % BUILDS_PER_NAME // 2}.{index % 2}.{rng.randint(0, 9)}"
    words = [rng.choice(_WORDS) for _ in range(_log_uniform(rng, 150, 4_500))]
    files = {f"lib/python3.12/site-packages/{name}/__init__.py": " ".join(words).encode()}
    depends: list[str] = ["python >=3.9"]
    run_exports = None
    if not noarch:
        files[f"lib/lib{name}.so"] = rng.randbytes(_log_uniform(rng, 2_000, 100_000))
        depends = list(rng.sample(_BASE_DEPENDS, rng.randint(1, 3)))
        if rng.random() < 0.3:
            run_exports = {"weak": [f"{name} >={version},<{int(version[0]) + 1}.0a0"]}
    depends += [f"{rng.choice(names)} >=1.{rng.randint(0, 9)}" for _ in range(rng.randint(0, 3))]
    return PackageSpec(
        name=name,
        version=version,
        build=f"{'pyhd8ed1ab' if noarch else 'h'}{rng.getrandbits(24):06x}_0",
        subdir="noarch" if noarch else "linux-64",
        noarch="python" if noarch else None,
        depends=tuple(depends),
        fmt=".conda" if rng.random() < 0.6 else ".tar.bz2",
        files=files,
        run_exports=run_exports,
        timestamp_ms=1_700_000_000_000 + index * 60_000,
    )


def channel_names(packages: int, seed: int) -> list[str]:
    return make_names(-(-packages // BUILDS_PER_NAME), random.Random(seed))


def _build_one(job: tuple[int, int, int, Path]) -> tuple[str, str, dict[str, Any]]:
    index, packages, seed, root = job
    spec = spec_for(index, channel_names(packages, seed), seed)
    return spec.subdir, spec.filename, build_package(spec, root / spec.subdir)


@dataclass(frozen=True)
class Pristine:
    root: Path  # the channel folder (named CHANNEL); package files only, never written again
    records: Records

    @property
    def files(self) -> int:
        return sum(len(r) for r in self.records.values())

    @property
    def total_bytes(self) -> int:
        return sum(rec["size"] for r in self.records.values() for rec in r.values())


def load_channel(marker: Path) -> Pristine:
    """A built channel from its records file (beside its folder)."""
    return Pristine(marker.with_name(marker.name.removesuffix("-records.json")) / CHANNEL,
                    json.loads(marker.read_text()))  # fmt: skip


def ensure_channel(workdir: Path, packages: int, seed: int) -> Pristine:
    """Build the channel once (in a process pool; cached under workdir), reuse it after."""
    base = workdir / "channels" / f"n{packages}-s{seed}-g{GENERATOR}"
    root = base / CHANNEL
    marker = base.with_name(base.name + "-records.json")
    if marker.exists():
        return load_channel(marker)
    if base.exists():
        shutil.rmtree(base)
    started = time.perf_counter()
    records: Records = {subdir: {} for subdir in SUBDIRS}
    for subdir in SUBDIRS:
        (root / subdir).mkdir(parents=True)
    jobs = [(i, packages, seed, root) for i in range(packages)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for subdir, filename, record in pool.map(_build_one, jobs, chunksize=64):
            records[subdir][filename] = record
    marker.write_text(json.dumps(records))
    pristine = Pristine(root, records)
    print(
        f"built {packages} packages, {fmt_mb(pristine.total_bytes)} MB, in "
        f"{time.perf_counter() - started:.0f} s at {root}",
        flush=True,
    )
    return pristine


def new_package(out_dir: Path, name: str, version: str, subdir: str = "linux-64") -> Path:
    """A real package: a new version of an existing name (rebuilds one shard, as in life)."""
    spec = PackageSpec(
        name=name,
        version=version,
        build="h0badc0d_0",
        subdir=subdir,
        depends=("libgcc-ng >=12",),
        fmt=".conda",
        files={f"lib/lib{name}.so": random.Random(version).randbytes(30_000)},
        run_exports={"weak": [f"{name} >={version}"]},
    )
    path = out_dir / spec.filename
    if not path.exists():
        build_package(spec, out_dir)
    return path


def drop_in(package: Path, subdir_dir: Path) -> Path:
    """Write the new package into the subdir and close it: the moment the clock starts."""
    target = subdir_dir / package.name
    with open(package, "rb") as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out)
    return target


def clone(src: Path, dst: Path) -> None:
    """Copy a tree: package files hard-linked (they are only read), everything else (index
    files, shards, caches, catalogs) copied with its mtime, so no tool's writes can reach
    another copy."""
    for dirpath, _, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            source = Path(dirpath) / filename
            if filename.endswith(PACKAGE_SUFFIXES):
                os.link(source, dst / rel / filename)
            else:
                shutil.copy2(source, dst / rel / filename)


def pristine_problems(pristine: Pristine) -> list[str]:
    """The pristine channel must hold exactly its package files, byte for byte."""
    problems = []
    for subdir, records in pristine.records.items():
        present = {p.name for p in (pristine.root / subdir).iterdir()}
        if present != set(records):
            problems.append(f"pristine {subdir}: {len(present ^ set(records))} files differ")
        for filename, record in records.items():
            data = (pristine.root / subdir / filename).read_bytes()
            if hashlib.sha256(data).hexdigest() != record["sha256"]:
                problems.append(f"pristine {subdir}/{filename} changed")
    return problems


# -- checks ----------------------------------------------------------------------------------


class _Listing(msgspec.Struct):
    packages: dict[str, msgspec.Raw] = {}
    packages_conda: dict[str, msgspec.Raw] = msgspec.field(
        default_factory=dict, name="packages.conda"
    )

    def all(self) -> dict[str, msgspec.Raw]:
        return {**self.packages, **self.packages_conda}


class _Digests(msgspec.Struct):
    sha256: str | None = None
    size: int | None = None


def listed(subdir_dir: Path) -> dict[str, msgspec.Raw]:
    """filename -> raw record, from both groups of a subdir's repodata.json."""
    return msgspec.json.decode((subdir_dir / "repodata.json").read_bytes(), type=_Listing).all()


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()


def shard_index(subdir_dir: Path) -> tuple[dict[str, bytes], str]:
    """name -> raw sha256 of the shard index, and where its shards are (relative)."""
    document = msgspec.msgpack.decode(_unzstd((subdir_dir / SHARD_INDEX).read_bytes()))
    return document["shards"], document["info"].get("shards_base_url", "")


def shard_files(subdir_dir: Path, base_url: str, digest: bytes) -> set[str]:
    path = subdir_dir / base_url.removeprefix("./") / f"{bytes(digest).hex()}.msgpack.zst"
    shard = msgspec.msgpack.decode(_unzstd(path.read_bytes()))
    return set(shard.get("packages", {})) | set(shard.get("packages.conda", {}))


def check_full(tree: Path, pristine: Pristine) -> list[str]:
    """Scenario 1: every subdir lists exactly its files with their sha256 and size, and the
    shards together hold exactly the same files."""
    problems: list[str] = []
    for subdir, records in pristine.records.items():
        folder = tree / subdir
        try:
            found = listed(folder)
        except (OSError, msgspec.DecodeError) as exc:
            problems.append(f"{subdir}: no readable repodata.json ({exc})")
            continue
        if set(found) != set(records):
            problems.append(f"{subdir}: repodata.json lists {len(found)}, expected {len(records)}")
        digests = {fn: msgspec.json.decode(raw, type=_Digests) for fn, raw in found.items()}
        wrong = sum(
            1
            for fn, d in digests.items()
            if fn in records and (d.sha256, d.size) != (records[fn]["sha256"], records[fn]["size"])
        )
        if wrong:
            problems.append(f"{subdir}: {wrong} records with a wrong sha256 or size")
        try:
            shards, base_url = shard_index(folder)
            in_shards: set[str] = set()
            for digest in shards.values():
                in_shards |= shard_files(folder, base_url, digest)
        except (OSError, KeyError, msgspec.DecodeError, zstandard.ZstdError) as exc:
            problems.append(f"{subdir}: shards unreadable ({exc!r})")
            continue
        if in_shards != set(records):
            problems.append(f"{subdir}: shards hold {len(in_shards)}, expected {len(records)}")
    return problems


def check_added(subdir_dir: Path, new: Path, name: str, expected_records: int) -> list[str]:
    """Scenarios 2-3: the new file is in repodata.json (with its sha256) and in its shard, and
    the subdir lists exactly `expected_records`."""
    problems: list[str] = []
    try:
        found = listed(subdir_dir)
    except (OSError, msgspec.DecodeError) as exc:
        return [f"no readable repodata.json ({exc})"]
    if len(found) != expected_records:
        problems.append(f"repodata.json lists {len(found)}, expected {expected_records}")
    record = found.get(new.name)
    if record is None:
        problems.append("new package missing from repodata.json")
    elif (
        msgspec.json.decode(record, type=_Digests).sha256
        != hashlib.sha256(new.read_bytes()).hexdigest()
    ):
        problems.append("new package listed with a wrong sha256")
    try:
        shards, base_url = shard_index(subdir_dir)
        if name not in shards:
            problems.append(f"shard index has no {name}")
        elif new.name not in shard_files(subdir_dir, base_url, shards[name]):
            problems.append("new package missing from its shard")
    except (OSError, KeyError, msgspec.DecodeError, zstandard.ZstdError) as exc:
        problems.append(f"shards unreadable ({exc!r})")
    return problems


# -- the tools -------------------------------------------------------------------------------

RATTLER_CODE = (
    "import asyncio, sys\n"
    "from rattler.index import index_fs\n"
    "asyncio.run(index_fs(sys.argv[1], write_zst=True, write_shards=True,"
    " force=sys.argv[2] == 'force'))\n"
)
INPROC_CODE = (
    "import json, os, sys, time\n"
    "t0 = time.perf_counter()\n"
    "from mirror.cli import run\n"
    "import mirror.adapters.catalog, mirror.local.indexer, mirror.publish.subdir\n"
    "t1 = time.perf_counter()\n"
    "code = run(sys.argv[1:])\n"
    "t2 = time.perf_counter()\n"
    "print(json.dumps({'imports': t1 - t0, 'work': t2 - t1}))\n"
    "sys.stdout.flush(); os._exit(code)\n"
)
LEAN_FLAGS = ("--no-run-exports", "--no-channeldata")
CONDA_INDEX_FLAGS = ("--zst", "--write-shards", "--run-exports", "--channeldata", "--no-rss")

CONDA_SHIM = {
    "conda/__init__.py": '"""Stand-in for conda (not on PyPI): only what conda-index imports."""\n',
    "conda/models/__init__.py": "",
    "conda/base/__init__.py": "",
    "conda/models/version.py": (
        "import functools\n"
        "from rattler import Version\n\n\n"
        "@functools.total_ordering\n"
        "class VersionOrder:\n"
        "    def __init__(self, vstr):\n"
        "        self.norm_version = str(vstr).strip().lower()\n"
        "        self._v = Version(self.norm_version)\n\n"
        "    def __eq__(self, other):\n"
        "        return self._v == other._v\n\n"
        "    def __lt__(self, other):\n"
        "        return self._v < other._v\n\n"
        "    def __hash__(self):\n"
        "        return hash(self.norm_version)\n\n"
        "    def __str__(self):\n"
        "        return self.norm_version\n"
    ),
    "conda/base/constants.py": (
        "PLATFORM_DIRECTORIES = (\n"
        '    "noarch", "emscripten-wasm32", "wasi-wasm32", "freebsd-64", "linux-32", "linux-64",\n'
        '    "linux-aarch64", "linux-armv6l", "linux-armv7l", "linux-ppc64", "linux-ppc64le",\n'
        '    "linux-riscv64", "linux-s390x", "osx-64", "osx-arm64", "win-32", "win-64",\n'
        '    "win-arm64", "zos-z",\n'
        ")\n"
    ),
}


@dataclass(frozen=True)
class Env:
    base: dict[str, str]
    conda_index: dict[str, str] | None  # None: conda-index cannot run here
    conda_index_note: str


def conda_index_env(workdir: Path, base: dict[str, str]) -> tuple[dict[str, str] | None, str]:
    """The environment conda-index runs in, and what its row should say about it."""
    probe = run_child([PYTHON, "-c", "import conda_index"], workdir / "probe.log", env=base)
    if probe.returncode != 0:
        return None, "conda-index is not installed (pip install conda-index)"
    probe = run_child(
        [PYTHON, "-c", "import conda.models.version"], workdir / "probe.log", env=base
    )
    if probe.returncode == 0:
        return base, ""
    shim = workdir / "conda-shim"
    for rel, text in CONDA_SHIM.items():
        (shim / rel).parent.mkdir(parents=True, exist_ok=True)
        (shim / rel).write_text(text)
    paths = [str(shim), *filter(None, [base.get("PYTHONPATH")])]
    env = {**base, "PYTHONPATH": os.pathsep.join(paths)}
    probe = run_child([PYTHON, "-c", "import conda_index.index"], workdir / "probe.log", env=env)
    if probe.returncode != 0:
        return None, f"conda-index does not import even with a conda stand-in: {probe.log}"
    return env, " (conda stand-in)"


def mirror_cmd(tree: Path, state: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "mirror", "index", str(tree), "--state-dir", str(state), *extra]


def rattler_cmd(tree: Path, *, force: bool) -> list[str]:
    return [PYTHON, "-c", RATTLER_CODE, str(tree), "force" if force else "incremental"]


def conda_index_cmd(tree: Path) -> list[str]:
    return [PYTHON, "-m", "conda_index", str(tree), *CONDA_INDEX_FLAGS]


@dataclass(frozen=True)
class Contender:
    """One row: the command, given the run folder (the tree is `out/CHANNEL`, mirror's state
    `out/state`); `start` is copied into the run folder first (None: nothing to index)."""

    row: str
    command: Callable[[Path], list[str]]
    env: dict[str, str]
    start: Path | None = None
    split_times: bool = False  # the child prints {"imports": s, "work": s} last


def _failed(run: ChildRun, what: str) -> list[str]:
    if run.returncode == 0 and not run.timed_out:
        return []
    tail = " | ".join(run.output().splitlines()[-3:])
    return [f"{what} exited {run.returncode}{' (timed out)' if run.timed_out else ''}: {tail}"]


def timed(
    samples: Samples, row: str, cmd: list[str], log: Path, env: dict[str, str],
    check: Callable[[], list[str]],
) -> Sample:  # fmt: skip
    run = run_child(cmd, log, env=env, timeout=TIMEOUT_S)
    problems = _failed(run, row) or check()
    sample = Sample(run.seconds, run.max_rss_bytes, problems)
    samples.setdefault(row, []).append(sample)
    return sample


def run_rounds(
    workdir: Path,
    contenders: list[Contender],
    rounds: int,
    *,
    prepare: Callable[[Path], None],
    check: Callable[[Path], list[str]],
    keep: Path | None = None,
) -> tuple[Samples, dict[str, Path]]:
    """Every contender once per round, in rotated order, each in a fresh run folder:
    `start` copied in, then `prepare(tree)`, then the timed child, then `check(tree)`.
    With `keep`, the last round's run folders are kept there (by row) and returned."""
    samples: Samples = {}
    kept: dict[str, Path] = {}
    for round_no in range(rounds):
        done = []
        for contender in rotated(contenders, round_no):
            out = workdir / "runs" / _slug(contender.row)
            _fresh(out)
            tree = out / CHANNEL
            if contender.start is not None:
                clone(contender.start, out)
                prepare(tree)
            sample = timed(
                samples, contender.row, contender.command(out), out / "run.log", contender.env,
                partial(check, tree) if contender.start is not None else list,
            )  # fmt: skip
            if contender.split_times and not sample.problems:
                inner = last_json_line((out / "run.log").read_text())
                samples.setdefault(INPROC_IMPORTS, []).append(Sample(inner["imports"]))
                samples.setdefault(INPROC_WORK, []).append(Sample(inner["work"]))
            done.append(f"{contender.row.split(' (')[0]}: {sample.seconds:.3f} s")
            if keep is not None and round_no == rounds - 1:
                _fresh(keep / _slug(contender.row))
                kept[contender.row] = out.rename(keep / _slug(contender.row) / "run")
            else:
                shutil.rmtree(out)
        print(f"  round {round_no + 1}/{rounds}: " + "; ".join(done), flush=True)
    return samples, kept


def _slug(row: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in row.split(" (")[0]).strip("-")


def _fresh(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


# -- scenario 1: from scratch ----------------------------------------------------------------

MIRROR = "mirror index (all defaults)"
MIRROR_LEAN = "mirror index --no-run-exports --no-channeldata"
RATTLER = "rattler-index (index_fs, zst + shards, force)"
CONDA_INDEX = "conda-index 0.13 (zst, shards, run_exports, channeldata)"


def scenario_scratch(
    workdir: Path, pristine: Pristine, env: Env, rounds: int
) -> tuple[Samples, dict[str, Path]]:
    """Index a fresh copy of the channel with each tool. The last round's run folders are
    kept, by row, as the starting points of scenario 2."""
    start = pristine.root.parent  # holds only CHANNEL/
    contenders = [
        Contender(MIRROR, lambda out: mirror_cmd(out / CHANNEL, out / "state"), env.base, start),
        Contender(MIRROR_LEAN, lambda out: mirror_cmd(out / CHANNEL, out / "state", *LEAN_FLAGS),
                  env.base, start),
        Contender(RATTLER, lambda out: rattler_cmd(out / CHANNEL, force=True), env.base, start),
    ]  # fmt: skip
    if env.conda_index is not None:
        contenders.append(Contender(CONDA_INDEX + env.conda_index_note,
                                    lambda out: conda_index_cmd(out / CHANNEL),
                                    env.conda_index, start))  # fmt: skip
    keep = workdir / "indexed" / str(pristine.files)
    return run_rounds(
        workdir, contenders, rounds, prepare=lambda tree: None,
        check=lambda tree: check_full(tree, pristine), keep=keep,
    )  # fmt: skip


# -- scenario 2: +1 package into an indexed subdir -------------------------------------------

MIRROR_SCAN = "mirror index PATH (full scan)"
MIRROR_FILE = "mirror index PATH --file linux-64/NEW.conda"
RATTLER_INC = "rattler-index (index_fs, no force)"
CONDA_INDEX_INC = "conda-index 0.13 (incremental, same flags)"
PYTHON_BARE = "python -c pass"
IMPORT_CLI = "python -c 'import mirror.cli'"
INPROC = "--file again, timed inside one process"
INPROC_IMPORTS = "  of which imports (mirror.cli, indexer, publish, catalog)"
INPROC_WORK = "  of which the work (mirror.cli.run)"


def scenario_add_one(
    workdir: Path, pristine: Pristine, kept: dict[str, Path], env: Env, rounds: int
) -> Samples:
    """Each tool from a copy of its own index of the channel, plus one new linux-64 package."""
    linux = pristine.records["linux-64"]
    name = min(r["name"] for r in linux.values())
    new = new_package(workdir / "new", name, "99.0.0")
    file_arg = f"linux-64/{new.name}"

    def mirror(*extra: str) -> Callable[[Path], list[str]]:
        return lambda out: mirror_cmd(out / CHANNEL, out / "state", *extra)

    def inproc(out: Path) -> list[str]:
        return [PYTHON, "-c", INPROC_CODE, "index", str(out / CHANNEL),
                "--state-dir", str(out / "state"), "--file", file_arg]  # fmt: skip

    contenders = [
        Contender(MIRROR_SCAN, mirror(), env.base, kept[MIRROR]),
        Contender(MIRROR_FILE, mirror("--file", file_arg), env.base, kept[MIRROR]),
        Contender(INPROC, inproc, env.base, kept[MIRROR], split_times=True),
        Contender(RATTLER_INC, lambda out: rattler_cmd(out / CHANNEL, force=False), env.base,
                  kept[RATTLER]),
        Contender(PYTHON_BARE, lambda out: [PYTHON, "-c", "pass"], env.base),
        Contender(IMPORT_CLI, lambda out: [PYTHON, "-c", "import mirror.cli"], env.base),
    ]  # fmt: skip
    if env.conda_index is not None:
        contenders.append(Contender(CONDA_INDEX_INC + env.conda_index_note,
                                    lambda out: conda_index_cmd(out / CHANNEL), env.conda_index,
                                    kept[CONDA_INDEX + env.conda_index_note]))  # fmt: skip
    samples, _ = run_rounds(
        workdir, contenders, rounds,
        prepare=lambda tree: drop_in(new, tree / "linux-64"),
        check=lambda tree: check_added(tree / "linux-64", new, name, len(linux) + 1),
    )  # fmt: skip
    return samples


# -- scenario 3: +1 package into a conda-forge-sized subdir ----------------------------------

CF_FILE = "mirror index PATH --file linux-64/NEW.conda"
CF_SCAN = "mirror index PATH --subdir linux-64 (full scan)"
CF_VERSION_PREFIX = "999."


@dataclass(frozen=True)
class CfState:
    tree: Path  # the channel folder
    state: Path  # mirror's --state-dir
    records: int
    names: tuple[str, ...]  # a few package names new versions are added to


def ensure_cf_state(workdir: Path, records: int, seed: int) -> CfState:
    """Build (once; cached) a channel whose linux-64 holds `records` mirrored files, as sparse
    placeholders, with mirror's catalog and full index written for them."""
    from mirror.adapters.catalog import Catalog, CatalogFile
    from mirror.adapters.store import local_tree
    from mirror.config.model import IndexSettings
    from mirror.publish.channel import publish_channeldata
    from mirror.publish.settings import settings_for
    from mirror.publish.subdir import publish_subdir

    base = workdir / f"cf-{records}-s{seed}-g{GENERATOR}"
    marker = base / "complete.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        return CfState(base / CHANNEL, base / "state", meta["records"], tuple(meta["names"]))
    if base.exists():
        shutil.rmtree(base)
    started = time.perf_counter()
    rng = random.Random(seed)
    per_name = 20
    names = make_names(-(-records // per_name), rng)
    subdir_dir = base / CHANNEL / "linux-64"
    subdir_dir.mkdir(parents=True)
    (base / CHANNEL / "noarch").mkdir()
    mtime_ns = 1_700_000_000_123_456_789
    rows = []
    for name in names:
        for filename, record in records_for(name, rng, per_name, names):
            if len(rows) == records:
                break
            path = subdir_dir / filename
            with open(path, "wb") as handle:
                os.truncate(handle.fileno(), record["size"])
            os.utime(path, ns=(mtime_ns, mtime_ns))
            st = path.stat()
            raw = msgspec.json.encode(record, order="sorted")
            rows.append(
                CatalogFile(
                    filename,
                    st.st_size,
                    st.st_mtime_ns,
                    record["sha256"],
                    record["md5"],
                    "mirror",
                    name=name,
                    record=raw,
                    indexed_ms=record["timestamp"],
                )
            )
    built = time.perf_counter()
    print(f"  {len(rows):,} placeholders in {built - started:.0f} s", flush=True)
    tree = local_tree(base)
    settings = IndexSettings(zst=True, shards=True, run_exports=True, channeldata=True)
    db_path = base / "state" / "catalog.sqlite"
    with Catalog(db_path) as catalog:
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", rows)
        del rows
        for subdir in SUBDIRS:
            publish_subdir(tree, catalog, CHANNEL, subdir, settings_for(settings, subdir, True))
        publish_channeldata(tree, catalog, CHANNEL, SUBDIRS, settings, enabled=True)
    picked = tuple(rng.sample(names, 8))
    marker.write_text(json.dumps({"records": records, "names": picked}) + "\n")
    print(f"  catalog + full index in {time.perf_counter() - built:.0f} s", flush=True)
    return CfState(base / CHANNEL, base / "state", records, picked)


def _retract_added(cf: CfState, env: Env, log: Path) -> list[str]:
    """Take out what earlier invocations added (untimed), so every invocation starts at
    cf.records records."""
    linux = cf.tree / "linux-64"
    added = [p.name for p in linux.iterdir() if f"-{CF_VERSION_PREFIX}" in p.name]
    if not added:
        return []
    for filename in added:
        (linux / filename).unlink()
    files = [arg for fn in added for arg in ("--file", f"linux-64/{fn}")]
    run = run_child(mirror_cmd(cf.tree, cf.state, *files), log, env=env.base, timeout=TIMEOUT_S)
    problems = _failed(run, "retracting earlier additions")
    count = len(listed(linux))
    if count != cf.records:
        problems.append(f"after retracting, repodata.json lists {count}, not {cf.records}")
    return problems


def scenario_conda_forge(workdir: Path, cf: CfState, env: Env, rounds: int) -> Samples:
    samples: Samples = {}
    problems = _retract_added(cf, env, workdir / "runs" / "cf-retract.log")
    if problems:
        raise SystemExit("; ".join(problems))
    linux = cf.tree / "linux-64"
    count = cf.records
    modes = [
        (CF_FILE, lambda new: ["--file", f"linux-64/{new.name}"]),
        (CF_SCAN, lambda new: ["--subdir", "linux-64"]),
    ]
    for round_no in range(rounds):
        done = []
        for i, (row, extra) in enumerate(rotated(modes, round_no)):
            name = cf.names[(2 * round_no + i) % len(cf.names)]
            new = new_package(workdir / "cf-new", name, f"{CF_VERSION_PREFIX}{2 * round_no + i}")
            count += 1
            drop_in(new, linux)
            sample = timed(
                samples,
                row,
                mirror_cmd(cf.tree, cf.state, *extra(new)),
                workdir / "runs" / f"cf-{_slug(row)}.log",
                env.base,
                lambda new=new, name=name, count=count: check_added(linux, new, name, count),
            )
            done.append(
                f"{row.split(' (')[0]}: {sample.seconds:.2f} s, {fmt_mb(sample.max_rss_bytes)} MB"
            )
        print(f"  round {round_no + 1}/{rounds}: " + "; ".join(done), flush=True)
    return samples


# -- report ----------------------------------------------------------------------------------


def median(samples: Samples, row: str) -> float:
    return Summary.of(s.seconds for s in samples.get(row, [])).median


def peak(samples: Samples, row: str) -> float:
    return max((s.max_rss_bytes for s in samples.get(row, [])), default=0)


@dataclass
class Report:
    tables: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, bool]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, key: str, title: str, samples: Samples, baseline: str, label: str) -> None:
        """tool, median, min/max, ratio to the baseline row, peak RSS, check."""
        base = median(samples, baseline)
        rows = []
        for row, runs in samples.items():
            summary = Summary.of(s.seconds for s in runs)
            rss = peak(samples, row)
            problems = sorted({p for s in runs for p in s.problems})
            rows.append([
                row, fmt_s(summary.median), f"{fmt_s(summary.minimum)} / {fmt_s(summary.maximum)}",
                fmt_ratio(summary.median / base), fmt_mb(rss) if rss else "",
                "; ".join(problems)[:300] if problems else "ok",
            ])  # fmt: skip
        headers = ["tool", "median s", "min / max s", f"vs {label}", "peak RSS MB", "check"]
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        self.tables.append(f"\n### {title} (load average after: {load})\n\n"
                           + markdown_table(headers, rows))  # fmt: skip
        print(self.tables[-1], flush=True)
        self.data[key] = {row: [asdict(s) for s in runs] for row, runs in samples.items()}

    def target(self, text: str, measured: str, met: bool) -> None:
        self.targets.append((text, measured, met))


def run_scenarios(args: argparse.Namespace, workdir: Path, env: Env, report: Report) -> None:
    plan = QUICK if args.quick else FULL
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else plan.sizes
    cf_records = args.cf_records or plan.cf_records
    scenarios = {int(s) for s in args.scenarios.split(",")}
    rounds = args.rounds
    largest = ensure_channel(workdir, sizes[-1], SEED) if scenarios & {1, 2} else None
    kept: dict[str, Path] = {}
    for n in sizes if 1 in scenarios else ():
        pristine = ensure_channel(workdir, n, SEED)
        print(f"scenario 1: from scratch, {n:,} packages", flush=True)
        samples, kept = scenario_scratch(workdir, pristine, env, rounds)
        report.table(f"scratch-{n}", f"1. from scratch: {n:,} packages "
                     f"({fmt_mb(pristine.total_bytes)} MB), {rounds} rounds",
                     samples, RATTLER, "rattler-index")  # fmt: skip
        ratio = median(samples, MIRROR) / median(samples, RATTLER)
        report.target(f"from scratch, {n:,}: mirror <= 0.5x rattler-index's time",
                      fmt_ratio(ratio), ratio <= 0.5)  # fmt: skip
    if 2 in scenarios and largest is not None:
        if not kept:
            print(f"scenario 2: indexing the {sizes[-1]:,}-package channel once", flush=True)
            _, kept = scenario_scratch(workdir, largest, env, 1)
        linux = len(largest.records["linux-64"])
        print(f"scenario 2: +1 package into an indexed linux-64 of {linux:,}", flush=True)
        samples = scenario_add_one(workdir, largest, kept, env, rounds)
        report.table("add-one", f"2. +1 package into an indexed linux-64 of {linux:,} "
                     f"({sizes[-1]:,} in the channel), {rounds} rounds",
                     samples, RATTLER_INC, "rattler-index")  # fmt: skip
        for row in (MIRROR_FILE, MIRROR_SCAN):
            value = median(samples, row)
            report.target(f"+1 into {sizes[-1]:,}: {row} < 0.3 s", f"{value:.3f} s", value < 0.3)
    if 3 in scenarios:
        print(f"scenario 3: +1 package into {cf_records:,} catalog records", flush=True)
        cf = ensure_cf_state(workdir, cf_records, SEED)
        samples = scenario_conda_forge(workdir, cf, env, rounds)
        report.table("conda-forge", f"3. +1 package into a linux-64 of {cf_records:,} mirrored "
                     f"records, {rounds} rounds", samples, CF_FILE, "--file")  # fmt: skip
        for row in (CF_FILE, CF_SCAN):
            value, rss = median(samples, row), peak(samples, row)
            report.target(f"{cf_records:,}: {row} < 3 s", f"{value:.2f} s", value < 3)
            report.target(f"{cf_records:,}: {row}, peak RSS < 1.2 GB", f"{fmt_mb(rss)} MB",
                          rss < 1.2e9)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench/index"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"sizes {QUICK.sizes}, {QUICK.cf_records:,} catalog records",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument(
        "--sizes",
        metavar="N,N",
        help="channel sizes of scenario 1, smallest "
        f"first (default {','.join(map(str, FULL.sizes))}); 2 uses the last",
    )
    parser.add_argument("--cf-records", type=int, help=f"scenario 3 (default {FULL.cf_records})")
    parser.add_argument("--scenarios", default="1,2,3", help="which to run (default %(default)s)")
    parser.add_argument("--no-conda-index", action="store_true", help="leave conda-index out")
    args = parser.parse_args(argv)  # fmt: skip
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base_env = child_env()
    conda_env, note = (None, "left out (--no-conda-index)")
    if not args.no_conda_index:
        conda_env, note = conda_index_env(workdir, base_env)
    print(f"conda-index: {note.strip(' ()') or 'runs with conda'}", flush=True)
    env = Env(base_env, conda_env, note if conda_env is not None else "")
    report = Report(data={"args": vars(args), "conda_index": note or "runs with conda"})
    run_scenarios(args, workdir, env, report)
    problems = [
        problem
        for marker in sorted((workdir / "channels").glob("*-records.json"))
        for problem in pristine_problems(load_channel(marker))
    ]
    print("\n".join(report.tables))
    print(
        "\n"
        + markdown_table(
            ["target", "measured", "met"],
            [(t, m, "yes" if ok else "NO") for t, m, ok in report.targets],
        )
    )
    if problems:
        print("\nPRISTINE CHANNEL CHANGED: " + "; ".join(problems[:5]))
    if env.conda_index_note:
        print(
            "\nconda-index ran with a stand-in for `conda` (not on PyPI): VersionOrder on "
            "rattler's Version, conda's PLATFORM_DIRECTORIES (CONDA_SHIM in this file)."
        )
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        report.data.update(wall_seconds=elapsed, pristine_problems=problems,
                           targets=[{"target": t, "measured": m, "met": ok}
                                    for t, m, ok in report.targets])  # fmt: skip
        write_json(args.json, report.data)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
