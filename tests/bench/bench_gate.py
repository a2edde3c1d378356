"""Benchmark: the record gate's cost per record.

Two sets of records, each a msgspec.Raw slice of a document split by parse_repodata as in a
sync:
  generated  bench_filter_large's generator (py311h1a2b3c4_0-style builds, 3-8 depends,
             constrains, licences, md5/sha256/size, timestamps in ms), written as that
             benchmark writes its repodata (sorted keys, indent 2). Its depends pin random
             versions, so a spec string repeats only 2.5 times: the cache's worst case;
  real       the shared real repodata (anaconda, pytorch, conda-forge samples; when present),
             whose specs repeat 18 times, as conda-forge's do.
Measured per record, best of --rounds, in this process:

  a. msgspec.json.decode(raw, type=RecordFields): typed decoding alone, the floor;
  b. admit() with one GateCache for the whole subdir (as filters.select uses it), cold;
  c. admit() with a warm cache (every string already judged: a daemon keeping one);
  d. admit() with no cache (every spec, version and name asked of rattler again);
  e. the JSON-level checks alone (record_json.decode_object), then with the typed convert.

Run from the repository root (a quick smoke run: --names 200 --rounds 1):
    python -m tests.bench.bench_gate [--names 2000] [--rounds 5] [--json OUT]
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

from mirror.core.gate import GateCache, admit, decode_record
from mirror.core.record_json import decode_object
from mirror.core.records import Record, RecordFields, parse_repodata
from tests.bench.bench_filter_large import SUBDIR, make_names, records_for
from tests.conftest import SHARED_REAL

CONDA_FORGE_RECORDS = 500_000
Entry = tuple[str, str, msgspec.Raw, str]  # file name, group, raw record, subdir
Step = Callable[[str, str, msgspec.Raw, str], object]


def generated_entries(names: int, seed: int = 11) -> list[Entry]:
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
    return [(fn, group, raw, SUBDIR) for fn, (group, raw) in parsed.entries.items()]


def real_entries() -> list[Entry]:
    """The shared real records the gate admits, each under the subdir it names."""
    out: list[Entry] = []
    for path in sorted((SHARED_REAL / "repodata").glob("*.json")):
        parsed = parse_repodata(path.read_bytes(), source=path.name)
        for filename, (group, raw) in parsed.entries.items():
            record = decode_record(filename, group, raw)
            if isinstance(record, Record):
                out.append((filename, group, raw, record.fields.subdir or SUBDIR))
    return out


def per_record_us(entries: Sequence[Entry], step: Step) -> float:
    started = time.perf_counter()
    for filename, group, raw, subdir in entries:
        step(filename, group, raw, subdir)
    return (time.perf_counter() - started) / len(entries) * 1e6


def with_cache(cache: GateCache | None) -> Step:
    return lambda f, g, r, s: admit(f, r, group=g, subdir=s, cache=cache)


def measure(entries: Sequence[Entry], rounds: int) -> dict[str, float]:
    warm = GateCache()
    per_record_us(entries, with_cache(warm))
    rows: dict[str, Callable[[], Step]] = {
        "a. typed decode (floor)": lambda: (
            lambda f, g, r, s: msgspec.json.decode(r, type=RecordFields)
        ),
        "b. admit, cold cache per subdir": lambda: with_cache(GateCache()),
        "c. admit, warm cache": lambda: with_cache(warm),
        "d. admit, no cache": lambda: with_cache(None),
        "e1. JSON-level checks": lambda: lambda f, g, r, s: decode_object(bytes(r)),
        "e2. + typed convert": lambda: (
            lambda f, g, r, s: msgspec.convert(decode_object(bytes(r)), RecordFields)
        ),
    }
    return {
        label: min(per_record_us(entries, make()) for _ in range(rounds))
        for label, make in rows.items()
    }


def report(title: str, entries: Sequence[Entry], rounds: int) -> dict[str, float]:
    refused = [
        fn for fn, g, r, s in entries if not isinstance(with_cache(None)(fn, g, r, s), Record)
    ]
    if refused:
        raise SystemExit(f"the gate refused {len(refused)} {title} records, e.g. {refused[:3]}")
    figures = measure(entries, rounds)
    print(f"{title}: {len(entries):,} records, best of {rounds} rounds, µs per record "
          f"(and s for conda-forge linux-64's {CONDA_FORGE_RECORDS:,}):")  # fmt: skip
    for label, us in figures.items():
        print(f"  {label:<34} {us:7.2f} µs   {us * CONDA_FORGE_RECORDS / 1e6:6.2f} s")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=2000, help="generated names, 20 records each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    results = {"generated": report("generated", generated_entries(args.names), args.rounds)}
    real = real_entries()
    if real:
        results["real"] = report("real", real, args.rounds)
    if args.json:
        args.json.write_text(json.dumps({"us_per_record": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
