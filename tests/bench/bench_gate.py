"""Benchmark: the record gate's cost per record on conda-forge-shaped records.

Records come from bench_filter_large's generator (py311h1a2b3c4_0-style builds, 3-8 depends,
constrains, licences, md5/sha256/size, timestamps in ms), written as that benchmark writes its
repodata (sorted keys, indent 2) and split by parse_repodata, so each record is a msgspec.Raw
slice of a document as in a sync. Measured per record, best of --rounds, in this process:

  a. msgspec.json.decode(raw, type=RecordFields): typed decoding alone, the floor;
  b. admit() with one GateCache for the whole subdir (as filters.select uses it);
  c. admit() with no cache (every spec, version and name asked of rattler again);
  d. the parts of (b): JSON-level checks (record_json.decode_object), then the typed convert.

Run from the repository root (a quick smoke run: --names 200):
    python -m tests.bench.bench_gate [--names 2000] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from mirror.core.gate import GateCache, admit
from mirror.core.record_json import decode_object
from mirror.core.records import Record, RecordFields, parse_repodata
from tests.bench.bench_filter_large import SUBDIR, make_names, records_for

CONDA_FORGE_RECORDS = 500_000
Entries = Sequence[tuple[str, str, msgspec.Raw]]


def make_entries(names: int, seed: int = 11) -> Entries:
    rng = random.Random(seed)
    all_names = make_names(names, rng)
    records = {fn: r for n in all_names for fn, r in records_for(n, rng, 20, all_names)}
    doc = {
        "info": {"subdir": SUBDIR},
        "packages": {fn: r for fn, r in records.items() if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in records.items() if fn.endswith(".conda")},
    }
    body = msgspec.json.format(msgspec.json.encode(doc, order="sorted"), indent=2)
    parsed = parse_repodata(body, source="bench")
    return [(fn, group, raw) for fn, (group, raw) in parsed.entries.items()]


def per_record_us(entries: Entries, step: Callable[[str, str, msgspec.Raw], object]) -> float:
    started = time.perf_counter()
    for filename, group, raw in entries:
        step(filename, group, raw)
    return (time.perf_counter() - started) / len(entries) * 1e6


def measure(entries: Entries, rounds: int) -> dict[str, float]:
    def typed(filename: str, group: str, raw: msgspec.Raw) -> object:
        return msgspec.json.decode(raw, type=RecordFields)

    def uncached(filename: str, group: str, raw: msgspec.Raw) -> object:
        return admit(filename, raw, group=group, subdir=SUBDIR)

    def json_level(filename: str, group: str, raw: msgspec.Raw) -> object:
        return decode_object(bytes(raw))

    def convert(filename: str, group: str, raw: msgspec.Raw) -> object:
        return msgspec.convert(decode_object(bytes(raw)), RecordFields)

    rows = {
        "a. typed decode (floor)": typed,
        "c. admit, no cache": uncached,
        "d1. JSON-level checks": json_level,
        "d2. + typed convert": convert,
    }
    best = {
        label: min(per_record_us(entries, step) for _ in range(rounds))
        for label, step in rows.items()
    }

    def with_cache(cache: GateCache) -> Callable[[str, str, msgspec.Raw], object]:
        return lambda f, g, r: admit(f, r, group=g, subdir=SUBDIR, cache=cache)

    cached = [per_record_us(entries, with_cache(GateCache())) for _ in range(rounds)]
    best["b. admit, one cache per subdir"] = min(cached)
    return dict(sorted(best.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=2000, help="package names, 20 records each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    entries = make_entries(args.names)
    refused = [
        fn for fn, g, r in entries if not isinstance(admit(fn, r, group=g, subdir=SUBDIR), Record)
    ]
    if refused:
        print(
            f"the gate refused {len(refused)} generated records, e.g. {refused[:3]}",
            file=sys.stderr,
        )
        return 1
    figures = measure(entries, args.rounds)
    print(f"{len(entries):,} records, best of {args.rounds} rounds, µs per record "
          f"(and s for conda-forge linux-64's {CONDA_FORGE_RECORDS:,}):")  # fmt: skip
    for label, us in figures.items():
        print(f"  {label:<34} {us:7.2f} µs   {us * CONDA_FORGE_RECORDS / 1e6:6.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"records": len(entries), "us_per_record": figures}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
