"""The oracle of the end-to-end sync fuzzer: what a sync must make of an upstream document.

For every record: the gate's verdict (admit, as the sync calls it), the rules that act on one
record at a time (cooldown, max age, max size: docs/configuration.md rules 4 and 5),
prefer_conda (rule 7) and whether the upstream file matches the record. File names listed
twice are ambiguous (conda, rattler and mirror all keep the last, but which is last depends on
the groups' order): they may be published with either record, or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from mirror.core.gate import GateCache, admit
from mirror.core.plan import WantedFile
from mirror.core.records import Record, parse_repodata, printable_name
from mirror.errors import RepodataError
from tests.support.upstream_docs import UpstreamDoc


@dataclass(frozen=True)
class Rules:
    """The filters an example runs with (the ones that act on one record at a time)."""

    cooldown_days: float | None = None
    max_age_days: float | None = None
    max_package_size_bytes: int | None = None
    prefer_conda: bool = True

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cooldown_days is not None:
            out["cooldown_days"] = self.cooldown_days
        if self.max_age_days is not None:
            out["max_age_days"] = self.max_age_days
        if self.max_package_size_bytes is not None:
            out["max_package_size"] = self.max_package_size_bytes
        if not self.prefer_conda:
            out["prefer_conda"] = False
        return out

    def keeps(self, record: Record, now_ms: int) -> bool:
        """docs/configuration.md's rules 4 and 5 for one record."""
        day_ms = 86_400_000
        ts = record.timestamp_ms
        ripe = (
            ts is None or self.cooldown_days is None or now_ms >= ts + self.cooldown_days * day_ms
        )
        if not ripe:
            return False
        if self.max_age_days is not None and (
            ts is None or now_ms > ts + self.max_age_days * day_ms
        ):
            return False
        limit = self.max_package_size_bytes
        return limit is None or (record.fields.size or 0) <= limit


def rules() -> st.SearchStrategy[Rules]:
    return st.builds(
        Rules,
        cooldown_days=st.sampled_from((None, None, 1.0)),
        max_age_days=st.sampled_from((None, None, 20_000.0)),
        max_package_size_bytes=st.sampled_from((None, None, 1_000_000)),
        prefer_conda=st.sampled_from((True, True, False)),
    )


@dataclass(frozen=True)
class Expectation:
    """What the sync of a document must publish, refuse and fail, by file name."""

    document_refused: bool
    publish: dict[str, bytes]  # file name -> the raw record it must be published with
    refuse: frozenset[str]  # printable names the report must name as refused
    fail: frozenset[str]  # selected, but the file upstream does not match the record
    # ambiguous names (listed twice, or shadowed by one): the records they may be published
    # with, and whether one of those may fail to download
    allowed: dict[str, frozenset[bytes]]
    allowed_may_fail: bool

    @property
    def exit_code(self) -> int | None:
        if self.document_refused or self.fail:
            return 1
        return None if self.allowed_may_fail else 0


def expect(doc: UpstreamDoc, rules_: Rules, upstream: Path, now_ms: int) -> Expectation:
    """The oracle: the gate's verdict on each record, the rules, prefer_conda, the files."""
    try:
        parse_repodata(doc.body, source="oracle")
    except RepodataError:
        return Expectation(True, {}, frozenset(), frozenset(), {}, False)
    cache = GateCache()
    refused: set[str] = set()
    selected: dict[str, bytes] = {}
    allowed: dict[str, set[bytes]] = {}
    for e in doc.entries:
        verdict = admit(e.filename, e.raw, group=e.group, subdir=doc.subdir, cache=cache)
        kept = isinstance(verdict, Record) and rules_.keeps(verdict, now_ms)
        if e.filename in doc.ambiguous:
            if kept:
                allowed.setdefault(e.filename, set()).add(e.raw)
        elif not isinstance(verdict, Record):
            refused.add(printable_name(e.filename))
        elif kept:
            selected[e.filename] = e.raw
    if rules_.prefer_conda:
        _prefer_conda(selected, allowed)
    folder = upstream / doc.subdir
    matching = {fn: raw for fn, raw in selected.items() if file_matches(folder, fn, raw)}
    may_fail = any(
        not file_matches(folder, fn, raw) for fn, raws in allowed.items() for raw in raws
    )
    return Expectation(
        document_refused=False,
        publish=matching,
        refuse=frozenset(refused),
        fail=frozenset(selected) - set(matching),
        allowed={fn: frozenset(raws) for fn, raws in allowed.items()},
        allowed_may_fail=may_fail,
    )


def _prefer_conda(selected: dict[str, bytes], allowed: dict[str, set[bytes]]) -> None:
    """Rule 7: a .tar.bz2 goes when the .conda of its build is selected; when that .conda is
    ambiguous (it may be refused), the .tar.bz2 may or may not be published."""
    surely = {fn.removesuffix(".conda") for fn in selected if fn.endswith(".conda")}
    maybe = {fn.removesuffix(".conda") for fn in allowed if fn.endswith(".conda")}
    for group in (selected, allowed):
        for fn in [f for f in group if f.endswith(".tar.bz2")]:
            stem = fn.removesuffix(".tar.bz2")
            if stem in surely:
                del group[fn]
            elif stem in maybe and group is selected:
                allowed.setdefault(fn, set()).add(selected.pop(fn))


def file_matches(folder: Path, filename: str, raw: bytes) -> bool:
    """Does the upstream file named by a record have the record's size and checksum?"""
    record = json.loads(raw)
    path = folder / filename
    if not path.is_file():
        return False
    data = path.read_bytes()
    want = WantedFile(filename, record.get("size"), record.get("sha256"), record.get("md5"))
    sha256, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
    return want.same_content(len(data), sha256, md5)
