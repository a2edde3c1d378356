"""Dependency closure: the records a channel needs beyond what its include specs name.

A `Universe` is what one target platform can install from: for each channel in priority order,
its platform subdir and `noarch`, each narrowed by that channel's own rules (exclude, licences,
dates, size, latest N, format). It decodes records lazily, by package name, so a closure over a
500,000-record upstream reads only the names it reaches. conda's strict channel priority holds:
the first channel that has a name available provides all of that name's records.

`closure_all` follows every dependency spec to every available record matching it. When no
available record matches, `explain_missing` says whether upstream lacks it (a gap upstream) or
which of our rules removed the records that would have matched (a gap we made).
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from mirror.core.filters import FilterRules, removal_reason, select
from mirror.core.gate import admit
from mirror.core.records import Record, Refusal, UpstreamRepodata, name_from_filename
from mirror.core.specs import Spec, to_rattler_record
from mirror.errors import SpecError

Key = tuple[str, str, str]  # channel, subdir, file name


@dataclass(frozen=True)
class Source:
    """One upstream channel/subdir's records and that channel's narrowing rules."""

    channel: str
    subdir: str
    repodata: UpstreamRepodata
    rules: FilterRules


@dataclass(frozen=True)
class Candidate:
    channel: str
    subdir: str
    record: Record

    @property
    def key(self) -> Key:
        return (self.channel, self.subdir, self.record.filename)

    @property
    def label(self) -> str:
        return f"{self.channel}/{self.subdir}/{self.record.filename}"


@dataclass(frozen=True)
class Reason:
    """Why a record is in the closure: a root spec, or a parent record's dependency."""

    spec: str
    parent: Key | None  # None: an include spec (or a lockfile) asked for it directly
    context: str = ""  # the platform and variant of the solve that found it


@dataclass
class Closure:
    """Records selected per (channel, subdir), why each is there, and what could not be met."""

    selected: dict[Key, Reason]
    problems: list[str]  # dependencies our own rules made unmeetable: a failure
    warnings: list[str]  # dependencies upstream itself cannot meet: reported, not a failure
    # per platform: include specs upstream has no candidate for there at all (a linux-only
    # package on osx-arm64); that platform is solved without them, a warning, not a failure
    unavailable: dict[str, list[str]] = field(default_factory=dict)

    def merge(self, other: Closure) -> None:
        for key, reason in other.selected.items():
            self.selected.setdefault(key, reason)
        self.problems.extend(p for p in other.problems if p not in self.problems)
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)
        for platform, specs in other.unavailable.items():
            mine = self.unavailable.setdefault(platform, [])
            mine.extend(s for s in specs if s not in mine)


class _Depends(msgspec.Struct):
    depends: list[str] = []


class Universe:
    """The available records of one platform, decoded by name on first use."""

    def __init__(self, sources: Sequence[Source], now_ms: int) -> None:
        self.sources = tuple(sources)
        self.now_ms = now_ms
        self._entries: list[dict[str, list[tuple[str, str, Any]]]] = []
        for source in self.sources:
            by_name: dict[str, list[tuple[str, str, Any]]] = defaultdict(list)
            for filename, (group, raw) in source.repodata.entries.items():
                by_name[name_from_filename(filename) or ""].append((filename, group, raw))
            self._entries.append(by_name)
        self._available: dict[str, list[Candidate]] = {}
        self._removed: dict[tuple[int, str], list[tuple[Candidate, str]]] = {}
        self._depends: dict[Key, tuple[str, ...]] = {}
        self._rattler: dict[Key, Any] = {}

    def names(self, channel: str | None = None) -> set[str]:
        return {
            name
            for source, by_name in zip(self.sources, self._entries, strict=True)
            if channel is None or source.channel == channel
            for name in by_name
            if name
        }

    def available(self, name: str) -> list[Candidate]:
        """The records of `name` a solve may use: those of the first channel that has any."""
        cached = self._available.get(name)
        if cached is not None:
            return cached
        found: list[Candidate] = []
        provider: str | None = None
        for index, source in enumerate(self.sources):
            if provider is not None and source.channel != provider:
                break
            kept = self._select(index, name)
            if kept:
                provider = source.channel
                found.extend(kept)
        self._available[name] = found
        return found

    def _select(self, index: int, name: str) -> list[Candidate]:
        source = self.sources[index]
        entries = self._entries[index].get(name)
        if not entries:
            return []
        subset = UpstreamRepodata(entries={f: (g, r) for f, g, r in entries}, top_level={})
        rules = replace(source.rules, include=())
        selection = select(subset, rules, self.now_ms, subdir=source.subdir)
        return [Candidate(source.channel, source.subdir, r) for r in selection.records]

    def removed(self, name: str) -> list[tuple[Candidate, str]]:
        """Upstream records of `name` our rules removed, each with the rule that did."""
        out: list[tuple[Candidate, str]] = []
        for index, source in enumerate(self.sources):
            cached = self._removed.get((index, name))
            if cached is None:
                kept = {c.record.filename for c in self._select(index, name)}
                cached = []
                for filename, group, raw in self._entries[index].get(name, ()):
                    if filename in kept:
                        continue
                    decoded = admit(filename, raw, group=group, subdir=source.subdir)
                    if isinstance(decoded, Refusal):
                        continue  # a refused record is no candidate for anything
                    why = removal_reason(decoded, source.rules, self.now_ms)
                    cached.append((Candidate(source.channel, source.subdir, decoded), why))
                self._removed[(index, name)] = cached
            out.extend(cached)
        return out

    def depends(self, candidate: Candidate) -> tuple[str, ...]:
        key = candidate.key
        found = self._depends.get(key)
        if found is None:
            try:
                decoded = msgspec.json.decode(candidate.record.raw, type=_Depends)
                found = tuple(d for d in decoded.depends if isinstance(d, str))
            except (msgspec.ValidationError, msgspec.DecodeError):
                found = ()
            self._depends[key] = found
        return found

    def matches(self, spec: Any, candidate: Candidate) -> bool:
        """Does a py-rattler MatchSpec accept this record?"""
        key = candidate.key
        if key not in self._rattler:
            self._rattler[key] = to_rattler_record(candidate.record.fields)
        record = self._rattler[key]
        return record is not None and bool(spec.matches(record))

    def reachable_names(self, roots: Iterable[str]) -> set[str]:
        """Every package name a solve starting from `roots` could touch."""
        seen: set[str] = set()
        queue = deque(n for n in roots if n)
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            for candidate in self.available(name):
                for dep in self.depends(candidate):
                    dep_name = dependency_name(dep)
                    if dep_name and dep_name not in seen:
                        queue.append(dep_name)
        return seen


_VIRTUAL = re.compile(r"(__[a-z0-9_.-]+)(?:[= ]+([^= ]+))?(?:[= ]+([^= ]+))?", re.IGNORECASE)


def split_virtual_package(text: str) -> tuple[str, str, str]:
    """`__glibc=2.28` or `__archspec=1=x86_64` -> (name, version, build); SpecError if not."""
    from rattler import Version

    match = _VIRTUAL.fullmatch(text.strip())
    if not match:
        raise SpecError(f"'{text}': write a virtual package as __name=version[=build]")
    name, version, build = match.groups()
    try:
        Version(version or "0")
    except Exception as exc:  # rattler's own exception types
        raise SpecError(f"'{text}': {exc}") from None
    return name.lower(), version or "0", build or "0"


def dependency_name(spec: str) -> str | None:
    """The package name a dependency string names; None for virtual packages (`__glibc`)."""
    head = spec.strip().split(" ", 1)[0]
    for stop in "=<>!~[":
        head = head.split(stop, 1)[0]
    if "::" in head:
        head = head.rsplit("::", 1)[1]
    head = head.lower()
    return None if not head or head.startswith("__") else head


def has_candidate(universe: Universe, spec: str) -> bool:
    """Does any record the universe makes available match `spec` (a MatchSpec string)? A spec
    that does not parse counts as having one: the solver then says what is wrong with it."""
    from rattler import MatchSpec

    name = dependency_name(spec)
    if name is None:
        return True
    try:
        parsed = MatchSpec(spec)
    except Exception:  # rattler's own exception types
        return True
    return any(universe.matches(parsed, c) for c in universe.available(name))


class _SpecCache:
    def __init__(self) -> None:
        self._parsed: dict[str, Any] = {}

    def get(self, text: str) -> Any:
        if text not in self._parsed:
            from rattler import MatchSpec

            try:
                self._parsed[text] = MatchSpec(text)
            except Exception:  # an unparseable dependency matches nothing
                self._parsed[text] = None
        return self._parsed[text]


def roots_matching(universe: Universe, channel: str, include: Sequence[Spec]) -> list[Candidate]:
    """The records of `channel` that the include specs select (after its narrowing rules)."""
    roots: list[Candidate] = []
    names = universe.names(channel)
    for name in sorted(names):
        if not any(spec.matches_name(name) for spec in include):
            continue
        for candidate in universe.available(name):
            if candidate.channel == channel and any(
                _spec_matches(universe, spec, candidate) for spec in include
            ):
                roots.append(candidate)
    return roots


def _spec_matches(universe: Universe, spec: Spec, candidate: Candidate) -> bool:
    if not spec.matches_name(candidate.record.fields.name):
        return False
    if spec.rattler_spec is None:
        return True
    return universe.matches(spec.rattler_spec, candidate)


def closure_all(
    universe: Universe, roots: Sequence[Candidate], root_reasons: dict[Key, Reason]
) -> Closure:
    """Every available record that matches a dependency spec of a selected record, transitively."""
    specs = _SpecCache()
    closure = Closure(selected=dict(root_reasons), problems=[], warnings=[])
    queue = deque(roots)
    matched: dict[str, list[Candidate]] = {}
    while queue:
        parent = queue.popleft()
        for dep in universe.depends(parent):
            name = dependency_name(dep)
            if name is None:
                continue
            found = matched.get(dep)
            if found is None:
                spec = specs.get(dep)
                found = [
                    c
                    for c in universe.available(name)
                    if spec is not None and universe.matches(spec, c)
                ]
                matched[dep] = found
                if not found:
                    _report_missing(universe, closure, dep, name, spec, parent)
            for candidate in found:
                if candidate.key not in closure.selected:
                    closure.selected[candidate.key] = Reason(dep, parent.key)
                    queue.append(candidate)
    return closure


def _report_missing(
    universe: Universe, closure: Closure, dep: str, name: str, spec: Any, parent: Candidate
) -> None:
    message, ours = explain_missing(universe, dep, name, spec, parent.label)
    (closure.problems if ours else closure.warnings).append(message)


def explain_missing(
    universe: Universe, dep: str, name: str, spec: Any, needed_by: str
) -> tuple[str, bool]:
    """Why nothing available matches `dep`, and whether our rules (True) or upstream is to blame."""
    blocked = [
        (c, why)
        for c, why in universe.removed(name)
        if spec is not None and universe.matches(spec, c)
    ]
    if not blocked:
        return f"'{dep}' (needed by {needed_by}): upstream has no matching record", False
    rules = sorted({why for _, why in blocked})
    examples = ", ".join(c.record.filename for c, _ in blocked[:3])
    return (
        f"'{dep}' (needed by {needed_by}) matches only records removed by "
        f"{'; '.join(rules)} ({examples}{', ...' if len(blocked) > 3 else ''})",
        True,
    )


def why_chain(selected: dict[Key, Reason], key: Key, limit: int = 20) -> list[str]:
    """The steps from a root spec down to `key`, outermost last: for `mirror why`."""
    steps: list[str] = []
    seen: set[Key] = set()
    current: Key | None = key
    while current is not None and current not in seen and len(steps) < limit:
        seen.add(current)
        reason = selected.get(current)
        if reason is None:
            break
        if reason.parent is None:
            steps.append(
                f"asked for by '{reason.spec}'" + (f" [{reason.context}]" if reason.context else "")
            )
        else:
            steps.append(f"{reason.parent[2]} needs '{reason.spec}'")
        current = reason.parent
    return steps
