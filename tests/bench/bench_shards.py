"""Benchmark (issue 14 part 1): a filtered sync through upstream CEP-16 shards vs through
repodata.json, side by side in one run.

Upstream: bench_filter_large's generated linux-64 subdir (500,000 records, ~350 MB of JSON, 250
included names with real package files; --quick: 20,000 records, 10 names), sharded with our
own writer (tests/bench/upstream_shards.py), noarch empty and sharded too. Two mirror sites
with the same rules (include 250 names, an exclude, a licence deny) differ only in
`repodata_source`: auto (shards) and full. Both sync once; then, each round:

  1. upstream changes: 10 of the included names (--quick: 3) get one new real package each,
     in repodata.json(.zst) and in their shards (a new shard per changed name, a new index);
  2. each site syncs (order rotated per round): the shard site must fetch only the two shard
     indexes (one 200, one 304), the 10 new shards and the 10 new packages;
  3. each site syncs again with nothing changed (a no-op: 304s only).

Every sync is a child process (`sync-once` below) that reports the seconds spent in run_sync
(its work, after imports) beside the child's wall time and peak RSS (GNU time). Medians over
--rounds. The machine may be shared: figures are noisy; rerun on a quiet machine.

Run from the repository root:
    python -m tests.bench.bench_shards [--rounds 5] [--workdir DIR] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from tests.bench.bench_filter_large import (
    CHANNEL,
    DENY,
    EXCLUDE,
    FULL,
    QUICK,
    SEED,
    SUBDIR,
    WORKERS,
    Upstream,
    ensure_upstream,
    publish_variant,
)
from tests.bench.benchlib import (
    PYTHON,
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
    warm_server,
    write_json,
)
from tests.bench.upstream_shards import shard_generated_subdir, update_shards
from tests.support.builder import PackageSpec, build_package
from tests.support.upstream_server import UpstreamServer

SITES = ("shards", "full")
ROWS = {
    ("shards", "changed"): "shards: changed upstream",
    ("full", "changed"): "full: changed upstream",
    ("shards", "noop"): "shards: no-op (index 304)",
    ("full", "noop"): "full: no-op (repodata 304)",
}


@dataclass
class State:
    """The upstream as it is now: its repodata.json bytes and each name's shard."""

    upstream: Upstream
    data: bytes
    shards: dict[str, str]
    added: set[str]  # file names added by the rounds (real packages)


def sharded_upstream(workdir: Path, quick: bool) -> State:
    upstream = ensure_upstream(workdir, QUICK if quick else FULL, SEED)
    marker = upstream.base / "sharded.json"
    data = (upstream.subdir_dir / "repodata.json").read_bytes()
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved["size"] == len(data):
            return State(upstream, data, saved["shards"], set(saved["added"]))
    started = time.perf_counter()
    result = shard_generated_subdir(upstream.subdir_dir, data=data)
    shard_generated_subdir(upstream.base / CHANNEL / "noarch")
    print(f"sharded linux-64: {result.summary()} ({time.perf_counter() - started:.0f} s)")
    state = State(upstream, data, result.shards, set())
    save(state)
    return state


def save(state: State) -> None:
    marker = state.upstream.base / "sharded.json"
    saved = {"size": len(state.data), "shards": state.shards, "added": sorted(state.added)}
    marker.write_text(json.dumps(saved))


def change_upstream(state: State, names: list[str], tag: str) -> None:
    """One new real package for each of `names`, in repodata.json(.zst) and their shards."""
    from mirror.core.records import name_from_filename, parse_repodata

    subdir_dir = state.upstream.subdir_dir
    wanted = set(names)
    repodata = parse_repodata(state.data, source="bench")
    records: dict[str, list[tuple[str, bytes]]] = {n: [] for n in names}
    for filename, (_, raw) in repodata.entries.items():
        name = name_from_filename(filename)
        if name in wanted:
            records[name].append((filename, bytes(raw)))
    del repodata
    entries = b""
    for name in names:
        spec = PackageSpec(name, f"9999.{tag}", build="h0000000_0", subdir=SUBDIR, license="MIT")
        record = build_package(spec, subdir_dir)
        raw = msgspec.json.encode(record, order="sorted")
        records[name].append((spec.filename, raw))
        entries += b"    " + msgspec.json.encode(spec.filename) + b": " + raw + b",\n"
        state.added.add(spec.filename)
    marker = b'\n  "packages.conda": {\n'
    at = state.data.index(marker) + len(marker)
    state.data = state.data[:at] + entries + state.data[at:]
    update = {name: records[name] for name in names}
    publish_variant(subdir_dir, state.data)  # repodata.json(.zst) ...
    state.shards = update_shards(subdir_dir, state.shards, update)  # ... and the shard index
    save(state)


def site_config(state: State, out: Path, url: str, source: str) -> Path:
    config = {
        "root": str(out / "channels"),
        "state_dir": str(out / "state"),
        "workers": WORKERS,
        "channels": {
            "cf": {
                "upstream": f"{url}/{CHANNEL}",
                "subdirs": [SUBDIR, "noarch"],
                "include": list(state.upstream.selected_names),
                "exclude": [EXCLUDE],
                "licenses": {"deny": [DENY]},
                "repodata_source": "auto" if source == "shards" else "full",
            }
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "mirror.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def published(out: Path) -> set[str]:
    doc = json.loads((out / "channels" / "cf" / SUBDIR / "repodata.json").read_bytes())
    return set(doc["packages"]) | set(doc["packages.conda"])


def timed_sync(config: Path, log: Path, server: UpstreamServer, env: dict[str, str]) -> Sample:
    server.clear_log()
    run = run_child(
        [PYTHON, "-m", "tests.bench.bench_shards", "sync-once", str(config)], log, env=env
    )
    problems = [] if run.returncode == 0 else [f"exit {run.returncode} (see {log})"]
    inner = last_json_line(run.output()) if run.returncode == 0 else {}
    requests = [(r.match_path, r.status) for r in server.requests]
    extra = {
        "work_s": inner.get("seconds", float("nan")),
        "subdirs": inner.get("subdirs", []),
        "requests": len(requests),
        "shard_requests": sum(1 for p, _ in requests if "/shards/" in p),
        "package_requests": sum(1 for p, _ in requests if p.endswith((".conda", ".tar.bz2"))),
        "index_200": sum(1 for p, s in requests if p.endswith("shards.msgpack.zst") and s == 200),
    }
    if not inner.get("ok", False):
        problems.append(f"sync not ok: {inner.get('summaries')}")
    return Sample(run.seconds, run.max_rss_bytes, problems, extra)


def check_changed(sample: Sample, site: str, changed: int) -> None:
    x = sample.extra
    if x["package_requests"] != changed:
        sample.problems.append(f"{x['package_requests']} package requests, expected {changed}")
    if site == "shards" and (x["shard_requests"], x["index_200"]) != (changed, 1):
        sample.problems.append(
            f"{x['shard_requests']} shards and {x['index_200']} indexes fetched, "
            f"expected {changed} and 1"
        )


def run_round(
    state: State, sites: dict[str, Path], server: UpstreamServer, samples: Samples, no: int
) -> None:
    rng = random.Random(SEED + no)
    changed = 3 if len(state.upstream.selected_names) < 100 else 10
    names = rng.sample(list(state.upstream.selected_names), changed)
    # the upstream is kept between invocations: every new package gets a version never used
    change_upstream(state, names, f"{int(time.time())}.{no}")
    warm_server(server.url, [f"/{CHANNEL}/{SUBDIR}/repodata.json.zst"])
    for kind in ("changed", "noop"):
        for site in rotated(list(SITES), no):
            log = sites[site].parent / f"round-{no}-{kind}.log"
            sample = timed_sync(sites[site], log, server, child_env())
            if kind == "changed":
                check_changed(sample, site, changed)
            elif sample.extra["requests"] != 2:
                sample.problems.append(f"{sample.extra['requests']} requests on a no-op")
            samples[ROWS[(site, kind)]].append(sample)
    first, second = (published(sites[s].parent) for s in SITES)
    if first != second:
        samples[ROWS[("shards", "changed")]][-1].problems.append(
            f"published sets differ: {len(first ^ second)} file names"
        )
    print(
        f"round {no + 1}: "
        + "; ".join(f"{row}: {runs[-1].seconds:.2f} s" for row, runs in samples.items()),
        flush=True,
    )


def report(samples: Samples, meta: dict[str, Any]) -> dict[str, Any]:
    walls = {row: Summary.of(s.seconds for s in runs) for row, runs in samples.items()}
    works = {row: Summary.of(s.extra["work_s"] for s in runs) for row, runs in samples.items()}
    full_wall = walls[ROWS[("full", "changed")]].median
    full_work = works[ROWS[("full", "changed")]].median
    rows = []
    for row, runs in samples.items():
        rss = sorted(x.max_rss_bytes for x in runs)
        moved = sorted(sum(d["repodata_bytes"] for d in x.extra["subdirs"]) for x in runs)
        problems = sorted({p for x in runs for p in x.problems})
        rows.append(
            [
                row,
                fmt_s(walls[row].median),
                f"{fmt_s(walls[row].minimum)} / {fmt_s(walls[row].maximum)}",
                fmt_s(works[row].median),
                fmt_ratio(walls[row].median / full_wall),
                fmt_ratio(works[row].median / full_work),
                fmt_mb(rss[len(rss) // 2]) if rss else "",
                f"{moved[len(moved) // 2] / 1e3:,.1f}" if moved else "",
                "; ".join(problems) if problems else "ok",
            ]
        )
    print(
        f"\n### shards vs repodata.json: {meta['records']:,} linux-64 records "
        f"({fmt_mb(meta['bytes'])} MB), {meta['selected_names']} included names, "
        f"{walls[ROWS[('full', 'changed')]].n} rounds\n"
    )
    headers = ["sync", "wall s (median)", "min / max", "work s", "wall vs full",
               "work vs full", "peak RSS MB", "repodata kB fetched", "check"]  # fmt: skip
    print(markdown_table(headers, rows))
    shards_changed = ROWS[("shards", "changed")]
    rss_max = max((x.max_rss_bytes for x in samples[shards_changed]), default=0)
    noop = works[ROWS[("shards", "noop")]].median
    targets = [
        ("shard sync wall <= 0.1x full path", walls[shards_changed].median / full_wall, 0.1),
        ("shard sync peak RSS < 300 MB (max)", rss_max / 1e6, 300),
        ("no-op (index 304) work < 0.2 s", noop, 0.2),
    ]
    print("\n| target | measured | met |\n| --- | ---: | --- |")
    for text, value, limit in targets:
        print(f"| {text} | {value:.3f} | {'yes' if value <= limit else 'NO'} |")
    return {
        "meta": meta,
        "rows": {row: [asdict(x) for x in runs] for row, runs in samples.items()},
        "targets": [{"target": t, "value": v, "met": v <= lim} for t, v, lim in targets],
    }


def sync_once(config: str) -> int:
    """Child entry: one sync, timing only its work (imports and config loading excluded)."""
    from mirror.config import load_config
    from mirror.sync.run import SyncOptions, run_sync

    loaded = load_config(Path(config))
    started = time.perf_counter()
    result = run_sync(loaded, SyncOptions())
    seconds = time.perf_counter() - started
    subdirs = [
        {"subdir": r.subdir, "source": r.repodata_source, "repodata_bytes": r.repodata_bytes}
        for r in result.subdirs
    ]
    summaries = [r.summary() for r in result.subdirs]
    print(
        json.dumps(
            {"seconds": seconds, "ok": result.ok, "subdirs": subdirs, "summaries": summaries}
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["sync-once"]:
        return sync_once(argv[1])
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--quick", action="store_true", help="20,000 records, 10 names")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    workdir = args.workdir.resolve() / ("shards-quick" if args.quick else "shards")
    state = sharded_upstream(workdir, args.quick)
    meta = {
        "records": (QUICK if args.quick else FULL).records,
        "bytes": len(state.data),
        "selected_names": len(state.upstream.selected_names),
        "index_bytes": (state.upstream.subdir_dir / "repodata_shards.msgpack.zst").stat().st_size,
    }
    samples: Samples = {row: [] for row in ROWS.values()}
    runs = workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    with UpstreamServer(state.upstream.base) as server:
        sites = {s: site_config(state, runs / s, server.url, s) for s in SITES}
        for site, config in sites.items():  # the first syncs: every selected file
            first = timed_sync(config, config.parent / "first.log", server, child_env())
            print(f"first sync through {site}: {first.seconds:.1f} s {first.problems or ''}")
        for round_no in range(args.rounds):
            run_round(state, sites, server, samples, round_no)
    results = report(samples, meta)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
