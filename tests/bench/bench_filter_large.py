"""Benchmark 2: a conda-forge-sized subdir (500,000 records, ~350 MB of JSON) filtered to ~1%.

The generated linux-64 repodata is shaped like conda-forge's (about 25,000 names with about 20
records each, py311h1a2b3c4_0-style builds, 3-8 depends, constrains, licences, md5/sha256/size,
timestamps in ms, occasional track_features, both `packages` and `packages.conda`, some builds
in both formats). The filters select about 1%: an `include` list of 250 exact names, minus an
`exclude` spec (debug builds) and a `licenses.deny` rule (AGPL), each removing a few. Only the
records of the included names have real files (tiny packages from tests.support.builder, their
true md5/sha256/size written into the repodata); the other 99% point at files that do not
exist, and mirror must never ask for them.

Measured, median over --rounds (each tool in its own process, order rotated each round):
  a. msgspec.json.decode of the whole file, bytes already in memory: the baseline;
  b. `mirror sync` after the upstream changed (one more unselected record, so a new ETag):
     fetch .zst, decompress, parse, filter, plan, publish; wall time and peak RSS;
  c. the first full `mirror sync` of a fresh tree (the same plus ~5,000 downloads);
  d. conda-mirror 0.10.0 `--dry-run` with a config whitelisting the same names.

Run from the repository root:
    python -m tests.bench.bench_filter_large [--rounds 3] [--workdir DIR] [--quick] [--json OUT]
        [--profile DIR]   # afterwards, one more (b) under cProfile, stats written to DIR
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from tests.bench.benchlib import (
    CONDA_MIRROR,
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
    rows_json,
    run_child,
    warm_server,
    write_json,
)
from tests.support.builder import PackageSpec, build_package, write_repodata
from tests.support.upstream_server import UpstreamServer

SEED = 5_000_000
CHANNEL = "cf-like"
SUBDIR = "linux-64"
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
EXCLUDE = "*[build=*debug*]"
DENY = "AGPL*"
WORKERS = 8
GENERATOR = 2  # bump when the generated data changes shape, so cached copies are not reused


@dataclass(frozen=True)
class Sizes:
    names: int
    records_per_name: int
    selected_names: int

    @property
    def records(self) -> int:
        return self.names * self.records_per_name


FULL = Sizes(25_000, 20, 250)
QUICK = Sizes(1_000, 20, 10)


# -- generating the repodata ---------------------------------------------------------------------

_SYLLABLES = (
    "al", "be", "cor", "da", "ex", "fu", "ga", "hy", "io", "ju", "ka", "lo", "mi", "no", "or",
    "pa", "qu", "ri", "sa", "tu", "ul", "vi", "wa", "xe", "yo", "za", "ten", "mon", "gri", "sto",
)  # fmt: skip
_PREFIXES = ("", "", "", "", "lib", "py", "r-", "perl-", "ros-humble-", "jupyterlab-", "types-")
_SUFFIXES = ("", "", "", "", "-core", "-base", "-dev", "-tools", "-utils", "-python", "-cpp")
_LICENSES = (
    ("MIT", "MIT"), ("BSD-3-Clause", "BSD"), ("BSD-2-Clause", "BSD"), ("Apache-2.0", "APACHE"),
    ("GPL-3.0-or-later", "GPL3"), ("GPL-2.0-only", "GPL2"), ("LGPL-2.1-or-later", "LGPL"),
    ("MPL-2.0", "MOZILLA"), ("ISC", "OTHER"), ("Zlib", "OTHER"), ("PSF-2.0", "PSF"),
)  # fmt: skip
_AGPL = ("AGPL-3.0-only", "AGPL")
_PYTHONS = ("38", "39", "310", "311", "312", "313")
_BASE_DEPENDS = (
    "libgcc-ng >=12", "libstdcxx-ng >=12", "__glibc >=2.17,<3.0.a0", "libzlib >=1.2.13,<2.0a0",
    "openssl >=3.2.1,<4.0a0", "libffi >=3.4,<4.0a0", "bzip2 >=1.0.8,<2.0a0",
)  # fmt: skip
_TRACK_FEATURES = ("blas_openblas", "pypy", "vc14", "cuda_compiler")


def make_names(count: int, rng: random.Random) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        name = rng.choice(_PREFIXES) + word + rng.choice(_SUFFIXES)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _versions(rng: random.Random) -> list[str]:
    major, minor, patch = rng.randint(0, 5), rng.randint(0, 20), rng.randint(0, 9)
    out = []
    for _ in range(rng.randint(3, 7)):
        out.append(f"{major}.{minor}.{patch}")
        if rng.random() < 0.3:
            minor, patch = minor + 1, 0
        else:
            patch += rng.randint(1, 3)
    return out


def records_for(
    name: str, rng: random.Random, count: int, names: list[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` (filename, record) pairs of one package name; ~4% of builds in both formats."""
    is_python = rng.random() < 0.4
    versions = _versions(rng)
    made = 0
    while made < count:
        version = rng.choice(versions)
        build_number = rng.choice((0, 0, 0, 1, 2))
        debug = "_debug" if rng.random() < 0.03 else ""
        python = rng.choice(_PYTHONS) if is_python else ""
        build = f"{'py' + python if python else ''}h{rng.getrandbits(28):07x}{debug}_{build_number}"
        license_, family = _AGPL if rng.random() < 0.03 else rng.choice(_LICENSES)
        depends = list(rng.sample(_BASE_DEPENDS, rng.randint(1, 3)))
        if python:
            depends += [f"python >=3.{python[1:]},<3.{int(python[1:]) + 1}.0a0",
                        f"python_abi 3.{python[1:]}.* *_cp{python}"]  # fmt: skip
        while len(depends) < rng.randint(3, 8):
            other = rng.choice(names)
            major = rng.randint(0, 9)
            depends.append(f"{other} >={major}.{rng.randint(0, 30)},<{major + 1}.0a0")
        record: dict[str, Any] = {
            "build": build,
            "build_number": build_number,
            "depends": depends,
            "license": license_,
            "md5": f"{rng.getrandbits(128):032x}",
            "name": name,
            "sha256": f"{rng.getrandbits(256):064x}",
            "size": int(rng.lognormvariate(12, 1.8)) + 1_000,
            "subdir": SUBDIR,
            "timestamp": rng.randint(1_450_000_000_000, 1_750_000_000_000),
            "version": version,
        }
        if rng.random() < 0.7:
            record["license_family"] = family
        if record["timestamp"] < 1_650_000_000_000:  # older conda-forge records carry these
            record.update(arch="x86_64", platform="linux")
        if rng.random() < 0.2:
            record["constrains"] = [f"{rng.choice(names)} >={rng.randint(1, 5)}.0"]
        if rng.random() < 0.01:
            record["track_features"] = rng.choice(_TRACK_FEATURES)
        stem = f"{name}-{version}-{build}"
        both = rng.random() < 0.04 and made + 2 <= count
        formats = (
            (".conda", ".tar.bz2") if both else (rng.choice((".conda",) * 13 + (".tar.bz2",) * 7),)
        )
        for ext in formats:
            yield stem + ext, dict(record)
            made += 1


def expected_selection(records: dict[str, dict[str, Any]], selected: set[str]) -> set[str]:
    """What the filters must keep, computed independently of mirror: records of the included
    names, minus debug builds, minus AGPL, minus a .tar.bz2 whose .conda twin is kept."""
    kept = {
        fn
        for fn, r in records.items()
        if r["name"] in selected
        and "debug" not in r["build"]
        and not r["license"].lower().startswith("agpl")
        and not r.get("license_family", "").lower().startswith("agpl")
    }
    return {
        fn
        for fn in kept
        if not (fn.endswith(".tar.bz2") and fn[: -len(".tar.bz2")] + ".conda" in kept)
    }


def _build_real(job: tuple[str, dict[str, Any], Path]) -> tuple[str, str, str, int]:
    """A tiny real package for one selected record; its true md5, sha256 and size."""
    filename, record, out_dir = job
    spec = PackageSpec(
        name=record["name"],
        version=record["version"],
        build=record["build"],
        build_number=record["build_number"],
        subdir=SUBDIR,
        depends=tuple(record["depends"]),
        constrains=tuple(record.get("constrains", ())),
        license=record["license"],
        license_family=record.get("license_family"),
        timestamp_ms=record["timestamp"],
        fmt=".conda" if filename.endswith(".conda") else ".tar.bz2",
        extra_index={"track_features": record["track_features"]}
        if "track_features" in record
        else {},
    )
    assert spec.filename == filename
    real = build_package(spec, out_dir)
    return filename, real["md5"], real["sha256"], real["size"]


@dataclass(frozen=True)
class Upstream:
    base: Path  # served root
    pristine: Path  # the generated repodata.json, never rewritten
    selected_names: tuple[str, ...]
    expected: frozenset[str]  # file names the filters must keep
    real_files: frozenset[str]  # file names that exist upstream

    @property
    def subdir_dir(self) -> Path:
        return self.base / CHANNEL / SUBDIR


def ensure_upstream(workdir: Path, sizes: Sizes, seed: int) -> Upstream:
    """Generate (once; cached under workdir) the repodata, its .zst, an empty noarch and the
    real packages of the included names."""
    name = f"{sizes.names}x{sizes.records_per_name}-{sizes.selected_names}-{seed}-g{GENERATOR}"
    base = workdir / f"filter-{name}"
    marker = base / "complete.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        return Upstream(
            base,
            base / "pristine-repodata.json",
            tuple(meta["selected_names"]),
            frozenset(meta["expected"]),
            frozenset(meta["real_files"]),
        )
    if base.exists():
        shutil.rmtree(base)
    started = time.perf_counter()
    rng = random.Random(seed)
    names = make_names(sizes.names, rng)
    selected = sorted(rng.sample(names, sizes.selected_names))
    selected_set = set(selected)
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        for filename, record in records_for(name, rng, sizes.records_per_name, names):
            records[filename] = record
    subdir_dir = base / CHANNEL / SUBDIR
    jobs = [(fn, r, subdir_dir) for fn, r in records.items() if r["name"] in selected_set]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for filename, md5, sha256, size in pool.map(_build_real, jobs, chunksize=64):
            records[filename].update(md5=md5, sha256=sha256, size=size)
    doc = {
        "info": {"subdir": SUBDIR},
        "packages": {fn: r for fn, r in records.items() if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in records.items() if fn.endswith(".conda")},
        "removed": [],
        "repodata_version": 1,
    }
    data = msgspec.json.format(msgspec.json.encode(doc, order="sorted"), indent=2) + b"\n"
    pristine = base / "pristine-repodata.json"
    pristine.write_bytes(data)
    publish_variant(subdir_dir, data)
    write_repodata(base / CHANNEL, "noarch", {})
    expected = expected_selection(records, selected_set)
    meta = {
        "selected_names": selected,
        "expected": sorted(expected),
        "real_files": sorted(fn for fn, _, _ in jobs),
        "records": len(records),
        "bytes": len(data),
        "seed": seed,
    }
    marker.write_text(json.dumps(meta) + "\n")
    print(
        f"generated {len(records):,} records, {fmt_mb(len(data))} MB, {len(jobs)} real files, "
        f"{len(expected)} expected after filters, in {time.perf_counter() - started:.0f} s"
    )
    return Upstream(
        base, pristine, tuple(selected), frozenset(expected), frozenset(meta["real_files"])
    )


def publish_variant(subdir_dir: Path, data: bytes) -> None:
    """Write repodata.json.zst then repodata.json, each by rename (the server never sees half)."""
    compressed = zstandard.ZstdCompressor(level=3, threads=-1, write_content_size=True).compress(
        data
    )
    for name, body in (("repodata.json.zst", compressed), ("repodata.json", data)):
        temp = subdir_dir / f".{name}.tmp"
        temp.write_bytes(body)
        os.replace(temp, subdir_dir / name)


def changed_upstream(upstream: Upstream, tag: str) -> None:
    """The pristine document plus one unselected record named after `tag`: a new ETag."""
    data = upstream.pristine.read_bytes()
    marker = b'\n  "packages.conda": {\n'
    at = data.index(marker) + len(marker)
    filename = f"zzz-churn-{tag}-1.0-h0000000_0.conda"
    record = {
        "build": "h0000000_0", "build_number": 0, "depends": [], "license": "MIT",
        "md5": "0" * 32, "name": f"zzz-churn-{tag}", "sha256": "0" * 64, "size": 1234,
        "subdir": SUBDIR, "timestamp": 1_750_000_000_000, "version": "1.0",
    }  # fmt: skip
    entry = b"    " + msgspec.json.encode(filename) + b": " + msgspec.json.encode(record) + b",\n"
    publish_variant(upstream.subdir_dir, data[:at] + entry + data[at:])


# -- measurements -----------------------------------------------------------------------------


DECODE = "a. msgspec.json.decode, whole file in memory (baseline)"
CHANGED = "b. mirror sync, changed upstream: fetch to published (CLI)"
FIRST = "c. mirror sync, first full sync (CLI)"
CONDA_MIRROR_ROW = "d. conda-mirror 0.10.0 --dry-run"


@dataclass(frozen=True)
class Bench:
    server: UpstreamServer
    upstream: Upstream
    env: dict[str, str]
    cm_timeout: float

    @property
    def url(self) -> str:
        return f"{self.server.url}/{CHANNEL}"

    def warm(self) -> None:
        warm_server(
            self.server.url,
            [f"/{CHANNEL}/{SUBDIR}/repodata.json.zst", f"/{CHANNEL}/{SUBDIR}/repodata.json"],
        )


def mirror_config(bench: Bench, out: Path) -> Path:
    config = {
        "root": str(out / "channels"),
        "state_dir": str(out / "state"),
        "workers": WORKERS,
        "channels": {
            "cf": {
                "upstream": bench.url,
                "subdirs": [SUBDIR, "noarch"],
                "include": list(bench.upstream.selected_names),
                "exclude": [EXCLUDE],
                "licenses": {"deny": [DENY]},
            }
        },
    }
    path = out / "mirror.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


def check_mirror(bench: Bench, out: Path, run: ChildRun) -> list[str]:
    """Exit code, published records == the independently computed selection, and no request
    for a file that does not exist upstream."""
    problems = [] if run.returncode == 0 else [f"exit {run.returncode} (see {run.log})"]
    try:
        doc = json.loads((out / "channels" / "cf" / SUBDIR / "repodata.json").read_bytes())
        published = set(doc["packages"]) | set(doc["packages.conda"])
    except (OSError, ValueError, KeyError) as exc:
        return [*problems, f"no published repodata ({exc})"]
    if published != bench.upstream.expected:
        problems.append(
            f"published {len(published)} records, expected {len(bench.upstream.expected)} "
            f"({len(published - bench.upstream.expected)} extra, "
            f"{len(bench.upstream.expected - published)} missing)"
        )
    asked = {
        r.match_path.rsplit("/", 1)[-1]
        for r in bench.server.requests
        if r.match_path.endswith(PACKAGE_SUFFIXES)
    }
    if asked - bench.upstream.real_files:
        problems.append(
            f"asked upstream for {len(asked - bench.upstream.real_files)} unselected files"
        )
    return problems


def run_mirror(bench: Bench, out: Path, samples: Samples, round_no: int) -> None:
    """(c) the first sync of a fresh tree, then (b) a sync after the upstream changed."""
    config = mirror_config(bench, out)
    cmd = [PYTHON, "-m", "mirror", "sync", "--config", str(config)]
    changed_upstream(bench.upstream, f"r{round_no}a")
    bench.warm()
    bench.server.clear_log()
    first = run_child(cmd, out / "first.log", env=bench.env)
    downloads = sum(1 for r in bench.server.requests if r.match_path.endswith(PACKAGE_SUFFIXES))
    samples[FIRST].append(
        Sample(first.seconds, first.max_rss_bytes, check_mirror(bench, out, first),
               {"package_requests": downloads})
    )  # fmt: skip
    changed_upstream(bench.upstream, f"r{round_no}b")
    bench.warm()
    bench.server.clear_log()
    changed = run_child(cmd, out / "changed.log", env=bench.env)
    problems = check_mirror(bench, out, changed)
    downloads = sum(1 for r in bench.server.requests if r.match_path.endswith(PACKAGE_SUFFIXES))
    if downloads:
        problems.append(f"{downloads} package requests after an unselected change")
    fetched = [r.match_path for r in bench.server.requests if r.status == 200]
    samples[CHANGED].append(
        Sample(changed.seconds, changed.max_rss_bytes, problems, {"fetched": fetched})
    )


def run_decode(bench: Bench, out: Path, samples: Samples, round_no: int) -> None:
    path = bench.upstream.subdir_dir / "repodata.json"
    cmd = [PYTHON, "-m", "tests.bench.benchlib", "decode", str(path)]
    run = run_child(cmd, out / "decode.log", env=bench.env)
    problems = [] if run.returncode == 0 else [f"exit {run.returncode} (see {run.log})"]
    inner = last_json_line(run.output()) if run.returncode == 0 else {"seconds": float("nan")}
    samples[DECODE].append(
        Sample(inner["seconds"], run.max_rss_bytes, problems, {"child_wall_s": run.seconds})
    )


def run_conda_mirror(bench: Bench, out: Path, samples: Samples, round_no: int) -> None:
    """conda-mirror's config: blacklist everything, whitelist the included names (a whitelist
    entry un-blacklists what it matches; it cannot also drop debug builds or AGPL from them)."""
    config = out / "conda-mirror.yaml"
    config.write_text(
        json.dumps(
            {
                "blacklist": [{"name": "*"}],
                "whitelist": [{"name": n} for n in bench.upstream.selected_names],
            }
        )
    )
    cmd = [
        CONDA_MIRROR, "--upstream-channel", bench.url, "--target-directory", str(out / "target"),
        "--platform", SUBDIR, "--config", str(config), "--dry-run", "--no-progress",
    ]  # fmt: skip
    run = run_child(cmd, out / "conda-mirror.log", env=bench.env, timeout=bench.cm_timeout)
    problems = [] if run.returncode == 0 else [f"exit {run.returncode} (see {run.log})"]
    if run.timed_out:
        problems.append(f"killed after {bench.cm_timeout:.0f} s")
    # its dry run logs the sorted list of files it would mirror
    listed = {w.strip("'\",[] ") for w in run.output().split()}
    names_files = bench.upstream.real_files  # every record of a whitelisted name
    found = len(names_files & listed)
    if found != len(names_files):
        problems.append(f"would mirror {found} of the {len(names_files)} whitelisted records")
    samples[CONDA_MIRROR_ROW].append(Sample(run.seconds, run.max_rss_bytes, problems))


# -- report ----------------------------------------------------------------------------------


def report(samples: Samples, meta: dict[str, Any]) -> dict[str, Any]:
    summaries = {row: Summary.of(s.seconds for s in runs) for row, runs in samples.items()}
    base = summaries[DECODE].median
    rows = []
    for row, runs in samples.items():
        s = summaries[row]
        rss = sorted(x.max_rss_bytes for x in runs)
        problems = sorted({p for x in runs for p in x.problems})
        rows.append(
            [
                row,
                fmt_s(s.median),
                f"{fmt_s(s.minimum)} / {fmt_s(s.maximum)}",
                fmt_ratio(s.median / base),
                f"{fmt_mb(rss[len(rss) // 2])} / {fmt_mb(rss[-1])}" if rss else "",
                "; ".join(problems) if problems else "ok",
            ]
        )
    print(
        f"\n### filtering a {meta['records']:,}-record, {fmt_mb(meta['bytes'])} MB linux-64 "
        f"repodata to {meta['expected']} records ({meta['selected_names']} included names): "
        f"{summaries[DECODE].n} rounds\n"
    )
    headers = ["measurement", "median s", "min / max s", "vs decode", "peak RSS MB med / max",
               "check"]  # fmt: skip
    print(markdown_table(headers, rows))
    changed = summaries[CHANGED].median
    changed_rss = max((x.max_rss_bytes for x in samples[CHANGED]), default=0)
    targets = [
        ("changed-upstream sync <= 1.5x msgspec decode", changed / base, changed / base <= 1.5),
        ("changed-upstream sync peak RSS < 1.2 GB (max of rounds, GB)", changed_rss / 1e9,
         changed_rss < 1.2e9),
    ]  # fmt: skip
    print("\n| target | measured | met |\n| --- | ---: | --- |")
    for text, value, met in targets:
        print(f"| {text} | {value:.2f} | {'yes' if met else 'NO'} |")
    return {
        "meta": meta,
        "rows": rows_json(samples, summaries),
        "targets": [{"target": t, "value": v, "met": m} for t, v, m in targets],
    }


def profile_changed(bench: Bench, out: Path, profile_dir: Path) -> None:
    """One more changed-upstream sync under cProfile; prints the top of the cumulative list."""
    import pstats

    profile_dir.mkdir(parents=True, exist_ok=True)
    config = mirror_config(bench, out)
    cmd = [PYTHON, "-m", "mirror", "sync", "--config", str(config)]
    run_child(cmd, out / "first.log", env=bench.env)
    changed_upstream(bench.upstream, "profile")
    bench.warm()
    prof = profile_dir / "mirror-sync-changed.prof"
    cprofile = [PYTHON, "-m", "tests.bench.benchlib", "profile-mirror", str(prof),
                "sync", "--config", str(config)]  # fmt: skip
    run = run_child(cprofile, profile_dir / "mirror-sync-changed.log", env=bench.env)
    print(f"\nprofiled changed-upstream sync: {run.seconds:.2f} s under cProfile -> {prof}")
    stats = pstats.Stats(str(prof))
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_filter_large",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.records:,} records")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument("--conda-mirror-timeout", type=float, default=1800, metavar="S")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="also profile one (b)")
    parser.add_argument("--keep", action="store_true", help="keep each round's trees")
    args = parser.parse_args(argv)
    if not Path(CONDA_MIRROR).exists():
        raise SystemExit("conda-mirror is missing: pip install conda-mirror==0.10.0")
    sizes = QUICK if args.quick else FULL
    workdir = args.workdir.resolve() / "filter"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    upstream = ensure_upstream(workdir, sizes, SEED)
    gc.collect()
    meta = {
        "sizes": asdict(sizes),
        "records": sizes.records,
        "bytes": upstream.pristine.stat().st_size,
        "zst_bytes": (upstream.subdir_dir / "repodata.json.zst").stat().st_size,
        "selected_names": len(upstream.selected_names),
        "expected": len(upstream.expected),
        "real_files": len(upstream.real_files),
    }
    samples: Samples = {row: [] for row in (DECODE, CHANGED, FIRST, CONDA_MIRROR_ROW)}
    with UpstreamServer(upstream.base) as server:
        bench = Bench(server, upstream, child_env(), args.conda_mirror_timeout)
        warm_server(server.url, [f"/{CHANNEL}/{SUBDIR}/{fn}" for fn in upstream.real_files])
        tools: list[tuple[str, Callable[[Bench, Path, Samples, int], None]]] = [
            ("mirror", run_mirror),
            ("decode", run_decode),
            ("conda-mirror", run_conda_mirror),
        ]
        for round_no in range(args.rounds):
            for name, tool in rotated(tools, round_no):
                out = workdir / "runs" / f"round-{round_no}" / name
                if out.exists():
                    shutil.rmtree(out)
                out.mkdir(parents=True)
                tool(bench, out, samples, round_no)
                done = [
                    f"{row}: {runs[-1].seconds:.2f} s, {fmt_mb(runs[-1].max_rss_bytes)} MB"
                    for row, runs in samples.items()
                    if len(runs) == round_no + 1 and _row_tool(row) == name
                ]
                print(f"round {round_no + 1}/{args.rounds}: " + "; ".join(done), flush=True)
                if not args.keep:
                    shutil.rmtree(out)
        results = report(samples, meta)
        if args.profile:
            out = workdir / "runs" / "profile"
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            profile_changed(bench, out, args.profile.resolve())
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        results["wall_seconds"] = elapsed
        write_json(args.json, results)
    return 0


def _row_tool(row: str) -> str:
    return {DECODE: "decode", CHANGED: "mirror", FIRST: "mirror"}.get(row, "conda-mirror")


if __name__ == "__main__":
    sys.exit(main())
