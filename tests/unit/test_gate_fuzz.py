"""Generative tests of the record gate: real records, mutated (tests/support/mutations.py).

Invariants, for every example:
  1. admit() never raises, and its own safety net (reason gate_error) is never needed;
  2. whatever it admits, rattler loads (whole file and name by name), and the admitted record
     keeps its raw bytes verbatim;
  3. a refusal names the file (printably), a reason from the list and a message;
  4. the valid records beside a mutant are admitted all the same, and the cache shared with
     them changes no verdict;
  5. an admitted file name is a plain, short basename; a local record built from a mutated
     index.json is refused with InvalidPackage or admitted, and then names only its own file.

Fixed seed and a bounded number of examples by default (a few seconds); the longer run sets
MIRROR_FUZZ_EXAMPLES (and MIRROR_FUZZ_RANDOM=1 for a fresh seed): tests/bench/fuzz_gate.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror.core.gate import GateCache, admit
from mirror.core.package_records import FOREIGN_KEYS, InvalidPackage, local_record
from mirror.core.records import (
    MAX_FILENAME_BYTES,
    Record,
    Refusal,
    RefusalReason,
    is_safe_filename,
    printable_name,
)
from tests.conftest import SHARED_REAL
from tests.support.mutations import (
    FALLBACK,
    Mutant,
    json_values,
    mutants,
    odd_enums,
    odd_identity,
    odd_specs,
    real_bases,
)
from tests.support.rattler_reads import rattler_refusal

BASES = FALLBACK + real_bases(SHARED_REAL)
EXAMPLES = int(os.environ.get("MIRROR_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not os.environ.get("MIRROR_FUZZ_RANDOM"),
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def judge(mutant: Mutant, cache: GateCache | None = None) -> Record | Refusal:
    verdict = admit(
        mutant.filename, mutant.raw, group=mutant.group, subdir=mutant.subdir, cache=cache
    )
    if isinstance(verdict, Refusal):
        assert verdict.reason is not RefusalReason.GATE_ERROR, (verdict, mutant.applied)
        assert verdict.reason in set(RefusalReason) and verdict.message
        assert verdict.filename == printable_name(mutant.filename)
    else:
        assert isinstance(verdict, Record) and verdict.raw is mutant.raw
        assert is_safe_filename(verdict.filename), mutant.applied
    return verdict


def rattler_says(mutants_: list[Mutant]) -> str | None:
    if not mutants_:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        entries = [(m.filename, m.group, m.raw) for m in mutants_]
        return rattler_refusal(Path(scratch), mutants_[0].subdir, entries)


@FUZZ
@given(mutants(BASES))
def test_whatever_the_gate_admits_rattler_reads(mutant: Mutant) -> None:
    verdict = judge(mutant)
    if isinstance(verdict, Record):
        assert rattler_says([mutant]) is None, mutant.applied


@FUZZ
@given(
    mutants(
        BASES, structural=(odd_identity, odd_specs, odd_enums), raw_ops=(), odd_file_names=False
    )
)
def test_names_versions_builds_and_specs_are_judged_as_rattler_reads_them(mutant: Mutant) -> None:
    verdict = judge(mutant)
    if isinstance(verdict, Record):
        assert rattler_says([mutant]) is None, mutant.applied


@FUZZ
@given(mutants(BASES), st.data())
def test_the_valid_records_beside_a_mutant_are_admitted_all_the_same(
    mutant: Mutant, data: st.DataObject
) -> None:
    siblings = [
        Mutant(b.filename, b.group, b.subdir, b.raw, ("sibling",))
        for b in data.draw(st.lists(st.sampled_from(BASES), min_size=1, max_size=4, unique=True))
        if b.subdir == mutant.subdir and b.filename != mutant.filename
    ]
    shared = GateCache()
    order = data.draw(st.permutations([*siblings, mutant]))
    verdicts = {m.filename: judge(m, shared) for m in order}
    assert all(isinstance(verdicts[s.filename], Record) for s in siblings)
    assert verdicts[mutant.filename] == judge(mutant)  # alone, with a fresh cache
    admitted = [m for m in order if isinstance(verdicts[m.filename], Record)]
    assert rattler_says(admitted) is None, mutant.applied


@FUZZ
@given(mutants(BASES))
def test_an_admitted_file_name_is_a_plain_short_basename(mutant: Mutant) -> None:
    verdict = judge(mutant)
    if isinstance(verdict, Record):
        name = verdict.filename
        assert name.isascii() and "/" not in name and "\\" not in name and "\x00" not in name
        assert len(name.encode()) <= MAX_FILENAME_BYTES and not name.startswith(".")
        assert ".." not in name and name.endswith((".conda", ".tar.bz2"))


def _index_of(mutant: Mutant) -> dict[str, Any] | None:
    try:
        index = json.loads(mutant.raw)
    except ValueError:
        return None
    return index if isinstance(index, dict) else None


@settings(FUZZ, max_examples=max(1, EXAMPLES // 2))  # each example loads a file in rattler
@given(mutants(BASES), st.sampled_from(sorted(FOREIGN_KEYS)), json_values(3))
def test_a_local_record_is_refused_or_names_only_its_own_file(
    mutant: Mutant, foreign: str, claim: Any
) -> None:
    index = _index_of(mutant)
    if index is None:
        return  # bytes that are no JSON object never reach a record (the archive refuses them)
    index[foreign] = claim
    subdir = mutant.subdir  # the folder the file is in; a different index.json subdir is refused
    try:
        raw = local_record(
            mutant.filename, subdir, index, size=123, sha256="a" * 64, md5="b" * 32,
            run_exports=None,
        )  # fmt: skip
    except InvalidPackage as refused:
        assert refused.gate_reason is not RefusalReason.GATE_ERROR, (refused, mutant.applied)
        return
    record = json.loads(raw)
    assert not FOREIGN_KEYS & set(record)
    assert (record["size"], record["sha256"]) == (123, "a" * 64)
    group = "packages.conda" if mutant.filename.endswith(".conda") else "packages"
    assert isinstance(admit(mutant.filename, raw, group=group, subdir=subdir), Record)
    assert rattler_says([Mutant(mutant.filename, group, subdir, raw, ())]) is None
