"""Dangling dependencies: records that depend on a package name no record of the channel provides.

Filters without `dependencies:` (`keep_latest: 1`, an include list that forgets `python_abi`)
can leave such records: clients then fail to install them. A dependency counts as dangling by
its package name alone (a version that does not match is the solver's business, and the
closure's); virtual packages (`__glibc`) and the revocation marker are never provided by a
record, so they never count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import msgspec

from mirror.core.closure import dependency_name
from mirror.core.patches import REVOKED_DEPENDENCY

NEVER_PROVIDED = frozenset({REVOKED_DEPENDENCY})  # a marker solvers must never satisfy

EXAMPLES = 3
NAMES_KEPT = 10


@dataclass(frozen=True)
class DependencyRecord:
    filename: str
    name: str
    depends: tuple[str, ...]


@dataclass(frozen=True)
class Dangling:
    """What a subdir's records need that nothing provides."""

    records: int  # records with at least one dangling dependency
    names: tuple[str, ...] = ()  # the missing names, the most needed first (NAMES_KEPT at most)
    examples: tuple[str, ...] = ()  # a few "<file> needs '<dependency>'"
    missing_names: int = 0  # how many names are missing in all

    @property
    def records_text(self) -> str:
        """`1 record depends` or `12 records depend`, to start a sentence about them."""
        return (
            f"{self.records:,} record depends"
            if self.records == 1
            else (f"{self.records:,} records depend")
        )

    @property
    def names_text(self) -> str:
        more = self.missing_names - len(self.names)
        return ", ".join(self.names) + (f" and {more} more" if more > 0 else "")


class _NameAndDepends(msgspec.Struct):
    name: str
    depends: list[object] | None = None  # the gate lets only strings through; be sure


def dependency_record(filename: str, raw: bytes) -> DependencyRecord | None:
    """The name and dependencies of a published record's JSON; None if it has no name."""
    try:
        decoded = msgspec.json.decode(raw, type=_NameAndDepends)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    depends = tuple(d for d in decoded.depends or () if isinstance(d, str))
    return DependencyRecord(filename, decoded.name.lower(), depends)


def find_dangling(
    records: Iterable[DependencyRecord], provided_elsewhere: Collection[str]
) -> Dangling:
    """`records`: one subdir's; `provided_elsewhere`: the names the rest of the channel a
    client of that subdir sees provides (noarch for a platform subdir)."""
    mine = list(records)
    provided = {r.name for r in mine} | NEVER_PROVIDED
    missing: Counter[str] = Counter()
    examples: list[str] = []
    count = 0
    names_of: dict[str, str | None] = {}  # a channel repeats the same dependency strings a lot
    for record in sorted(mine, key=lambda r: r.filename):
        gaps = []
        for dep in record.depends:
            if dep not in names_of:
                names_of[dep] = dependency_name(dep)
            name = names_of[dep]
            if name and name not in provided and name not in provided_elsewhere:
                gaps.append((name, dep))
        if not gaps:
            continue
        count += 1
        missing.update({name for name, _ in gaps})
        if len(examples) < EXAMPLES:
            examples.append(f"{record.filename} needs '{gaps[0][1]}'")
    names = tuple(name for name, _ in sorted(missing.items(), key=lambda i: (-i[1], i[0])))
    return Dangling(count, names[:NAMES_KEPT], tuple(examples), len(names))
