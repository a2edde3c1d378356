"""The package names whose upstream shards a channel's rules can reach, from the shard index.

Include specs reach names by `Spec.matches_name` (exact names and globs); lockfiles reach exact
names; a closure reaches the names its records' dependencies mention, discovered one round of
shard fetches at a time (`NameWalk`, `walk_names`). Names are a superset: the record filters
still decide which records of a reached name are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import translate

from mirror.core.specs import Spec

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class NameSelection:
    """Names of the index that the specs select, and the specs that select none of them."""

    names: frozenset[str]
    unmatched: tuple[str, ...]  # spec texts, in the order given


def names_for_specs(index_names: Iterable[str], specs: Sequence[Spec]) -> NameSelection:
    """Every name in the index that some spec's name part matches (case as matches_name: the
    index name lowercased against the spec's pattern), without a glob test per name and spec."""
    lowered: dict[str, list[str]] = {}
    for name in index_names:
        lowered.setdefault(name.lower(), []).append(name)
    found: set[str] = set()
    unmatched: list[str] = []
    for spec in specs:
        pattern = spec.name_pattern
        if _GLOB_CHARS.isdisjoint(pattern):
            hits = lowered.get(pattern, [])
        else:
            matcher = re.compile(translate(pattern))  # what fnmatchcase does, compiled once
            hits = [n for low, names in lowered.items() if matcher.match(low) for n in names]
        if not hits:
            unmatched.append(spec.text)
        found.update(hits)
    return NameSelection(frozenset(found), tuple(unmatched))


def names_in_index(index_names: Collection[str], wanted: Iterable[str]) -> frozenset[str]:
    """The exact names (a lockfile's, a closure's roots) that the index has shards for."""
    return frozenset(name for name in wanted if name in index_names)


class NameWalk:
    """Breadth-first over package names: which names a closure still has to ask for.

    Each name is handed out once, however often dependencies mention it; names without a
    shard in any index are handed out too (the caller finds nothing and adds nothing).
    """

    def __init__(self, roots: Iterable[str] = ()) -> None:
        self._seen: set[str] = set()
        self._queue: list[str] = []
        self.add(roots)

    def add(self, names: Iterable[str]) -> None:
        """Names found in fetched records; those not seen before are queued."""
        for name in names:
            if name and name not in self._seen:
                self._seen.add(name)
                self._queue.append(name)

    def next_round(self) -> tuple[str, ...]:
        """The queued names (sorted, so fetch order is stable), each handed out once."""
        batch = tuple(sorted(self._queue))
        self._queue.clear()
        return batch

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    @property
    def seen(self) -> frozenset[str]:
        return frozenset(self._seen)


def walk_names(
    roots: Iterable[str], fetch_round: Callable[[tuple[str, ...]], Iterable[str]]
) -> frozenset[str]:
    """Every name reachable from `roots`. `fetch_round(names)` fetches those names' shards
    (in every subdir whose index has them) and returns the dependency names they mention;
    it is called once per round with names not asked for before."""
    walk = NameWalk(roots)
    while walk.pending:
        walk.add(fetch_round(walk.next_round()))
    return walk.seen
