"""Use case: before any subdir syncs, grow the selection to what the include specs need.

For every channel with `dependencies:` or `lockfiles:`, this fetches the upstream repodata of
each subdir the closure can reach (the platform subdirs, `noarch`, and those of the channels it
resolves from), computes the closure (core/closure.py, or py-rattler's solver for `solve`), and
hands each subdir sync the file names it must mirror and the repodata it already fetched.
Upstream repodata bodies are cached in the state directory, so an upstream that answers
"not modified" still gives the closure its records.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mirror.adapters.catalog import ClosureNote, ClosureNoteKind
from mirror.adapters.solver import SolveError, default_virtual_packages
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.closure import (
    Candidate,
    Closure,
    Key,
    Reason,
    Source,
    Universe,
    closure_all,
    has_candidate,
    roots_matching,
)
from mirror.core.filters import FilterRules, removal_reason
from mirror.core.gate import admit
from mirror.core.records import Record, UpstreamRepodata
from mirror.errors import MirrorError
from mirror.sync.closure_fetch import Fetcher, Prefetched
from mirror.sync.closure_solve import explain_solution, solve_available
from mirror.sync.context import SyncContext
from mirror.sync.lockfile_pins import lock_targets, lockfile_pins

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubdirClosure:
    """What the closure asks of one channel/subdir."""

    pins: dict[str, Reason]  # file name -> why it must be mirrored
    defines_selection: bool  # True: the pins are the selection; False: added to the filters'
    prefetched: Prefetched | None
    # a closure that failed (in part) cannot say what is no longer needed: delete nothing
    additive: bool = False

    @property
    def digest(self) -> str:
        text = repr((self.defines_selection, self.additive, sorted(self.pins)))
        return hashlib.sha256(text.encode()).hexdigest()

    def records(
        self, repodata: UpstreamRepodata, selected: Sequence[Record], subdir: str
    ) -> list[Record]:
        """The subdir's selection: the filters' records (unless the closure defines it) + pins."""
        out = [] if self.defines_selection else list(selected)
        have = {r.filename for r in out}
        for filename in sorted(self.pins):
            entry = repodata.entries.get(filename)
            if filename in have or entry is None:
                continue
            decoded = admit(filename, entry[1], group=entry[0], subdir=subdir)
            if isinstance(decoded, Record):
                out.append(decoded)
        return out


@dataclass
class ClosurePlan:
    subdirs: dict[tuple[str, str], SubdirClosure] = field(default_factory=dict)
    reasons: dict[Key, Reason] = field(default_factory=dict)  # for `mirror why`
    problems: dict[str, list[str]] = field(default_factory=dict)  # per channel: a failure
    warnings: dict[str, list[str]] = field(default_factory=dict)  # per channel: reported only
    # per (channel, platform): include specs with no candidate there upstream, left out
    unavailable: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    extra_channels: tuple[str, ...] = ()  # channels to sync because a closure pins into them
    computed: tuple[str, ...] = ()  # the channels whose closure this plan holds

    def for_subdir(self, channel: str, subdir: str) -> SubdirClosure | None:
        return self.subdirs.get((channel, subdir))

    def notes(self, channel: str) -> list[ClosureNote]:
        """What `mirror status` shows of this channel's closure until the next one."""
        notes = [ClosureNote(ClosureNoteKind.PROBLEM, p) for p in self.problems.get(channel, [])]
        for (name, platform), specs in sorted(self.unavailable.items()):
            if name == channel:
                notes.extend(
                    ClosureNote(
                        ClosureNoteKind.UNAVAILABLE, unavailable_message(s, platform), platform, s
                    )
                    for s in specs
                )
        return notes


def closure_channels(config: MirrorConfig, synced: Iterable[str]) -> list[ChannelConfig]:
    """The channels whose closure must be computed when `synced` channels sync: their own, and
    any that pin into them (or a sync of the target would delete what they need)."""
    names = set(synced)
    return [
        c
        for c in config.channels
        if (c.dependencies.enabled or c.lockfiles)
        and (
            c.name in names
            or names & set(c.dependencies.channels)
            or names & lock_targets(config, c)
        )
    ]


def closure_targets(config: MirrorConfig, synced: Iterable[str]) -> set[str]:
    """`synced` plus every channel their closures can pin into, transitively."""
    names = set(synced)
    while True:
        grown = set(names)
        for channel in config.channels:
            if channel.name in names:
                grown.update(channel.dependencies.channels)
                grown.update(lock_targets(config, channel))
        if grown == names:
            return names
        names = grown


def plan_closures(ctx: SyncContext, synced: Sequence[str], *, expand: bool = True) -> ClosurePlan:
    """Fetch what the closures need and compute them; never raises for one channel's trouble.

    With `expand`, channels the closures pin into are synced too (`extra_channels`), so their
    own closures are computed as well."""
    plan = ClosurePlan()
    targets = closure_targets(ctx.config, synced) if expand else set(synced)
    channels = closure_channels(ctx.config, targets)
    if not channels:
        return plan
    fetcher = Fetcher(ctx)
    pins: dict[tuple[str, str], dict[str, Reason]] = defaultdict(dict)
    defines: set[tuple[str, str]] = set()
    additive: set[str] = set()
    for channel in channels:
        if channel.dependencies.mode == "solve" or not channel.filters.include:
            defines.update((channel.name, s) for s in channel.subdirs)
        try:
            closure = _channel_closure(ctx, fetcher, channel)
            closure.merge(lockfile_pins(ctx, fetcher, channel))
        except MirrorError as exc:
            closure = Closure(selected={}, problems=[str(exc)], warnings=[])
        if closure.problems:
            plan.problems.setdefault(channel.name, []).extend(closure.problems)
            additive.update(m.name for m in _resolution_order(ctx, channel))
            additive.update(lock_targets(ctx.config, channel))
        for platform, specs in closure.unavailable.items():
            plan.unavailable[(channel.name, platform)] = specs
            plan.warnings.setdefault(channel.name, []).extend(
                unavailable_message(s, platform) for s in specs
            )
        if closure.warnings:
            plan.warnings.setdefault(channel.name, []).extend(closure.warnings)
        for key, reason in closure.selected.items():
            pins[(key[0], key[1])].setdefault(key[2], reason)
            plan.reasons.setdefault(key, reason)
    for where in set(pins) | defines | set(fetcher.fetched):
        plan.subdirs[where] = SubdirClosure(
            pins=pins.get(where, {}),
            defines_selection=where in defines,
            prefetched=fetcher.prefetched(where),
            additive=where[0] in additive,
        )
    plan.extra_channels = tuple(sorted(({c for c, _ in pins} | targets) - set(synced)))
    plan.computed = tuple(c.name for c in channels)
    for name, problems in plan.problems.items():
        plan.problems[name] = [ctx.redactor(p) for p in problems]
        for problem in plan.problems[name]:
            log.error("%s: %s", name, problem)
    for name, warnings in plan.warnings.items():
        for warning in warnings[:20]:
            log.warning("%s: %s", name, ctx.redactor(warning))
    return plan


# -- closures -----------------------------------------------------------------------------------


def _resolution_order(ctx: SyncContext, channel: ChannelConfig) -> list[ChannelConfig]:
    others = [ctx.config.channel(n) for n in channel.dependencies.channels]
    return [channel, *(c for c in others if c is not None)]


def _universe(
    ctx: SyncContext, fetcher: Fetcher, channel: ChannelConfig, platform: str, *, narrowed: bool
) -> Universe:
    members = [
        (member, subdir)
        for member in _resolution_order(ctx, channel)
        for subdir in dict.fromkeys((platform, "noarch"))
        if subdir in member.subdirs
    ]
    fetcher.reach(channel, members)  # shards: load every name the roots reach
    sources = []
    for member, subdir in members:
        repodata = fetcher.repodata(member, subdir)
        rules = member.filters if narrowed else FilterRules(prefer_conda=False)
        sources.append(Source(member.name, subdir, repodata, rules))
    return Universe(sources, int(ctx.clock() * 1000))


def _channel_closure(ctx: SyncContext, fetcher: Fetcher, channel: ChannelConfig) -> Closure:
    closure = Closure(selected={}, problems=[], warnings=[])
    mode = channel.dependencies.mode
    if mode == "none":
        return closure
    for platform in channel.platforms:
        if ctx.stop.is_set():
            break
        universe = _universe(ctx, fetcher, channel, platform, narrowed=True)
        if mode == "all":
            roots = roots_matching(universe, channel.name, channel.filters.include)
            if not channel.filters.include:
                roots = [c for n in universe.names(channel.name) for c in universe.available(n)]
            reasons = {r.key: Reason("include", None, platform) for r in roots}
            closure.merge(closure_all(universe, roots, reasons))
            continue
        closure.merge(_solve_platform(ctx, fetcher, channel, platform, universe))
    return closure


def _solve_platform(
    ctx: SyncContext, fetcher: Fetcher, channel: ChannelConfig, platform: str, universe: Universe
) -> Closure:
    """Each variant's solve on one platform, without the include specs upstream has nothing
    for on this platform (a linux-only package must not cost osx-arm64 its whole solve)."""
    closure = Closure(selected={}, problems=[], warnings=[])
    include = [s.text for s in channel.filters.include]
    absent = _without_candidates(ctx, fetcher, channel, platform, universe, include)
    if absent:
        closure.unavailable[platform] = absent
        include = [s for s in include if s not in absent]
        if not include:  # the variants alone would mirror what nobody asked for
            return closure
    for variant in channel.dependencies.variants:
        specs = include + list(variant)
        if not specs:
            continue
        context = platform + (f", {' '.join(variant)}" if variant else "")
        virtual = channel.dependencies.virtual_packages_for(platform)
        if virtual is None:
            virtual = default_virtual_packages(platform)
        try:
            solved = solve_available(ctx, universe, specs, virtual)
        except SolveError as exc:
            problem, partial = _diagnose(
                ctx, fetcher, channel, platform, specs, virtual, universe, str(exc)
            )
            closure.problems.append(problem)
            closure.merge(partial)  # the rest of what it needs, so the check names the gap
            continue
        closure.merge(explain_solution(solved, specs, context))
    return closure


def _without_candidates(
    ctx: SyncContext,
    fetcher: Fetcher,
    channel: ChannelConfig,
    platform: str,
    narrowed: Universe,
    specs: Sequence[str],
) -> list[str]:
    """The specs no upstream record matches on this platform, before our rules too; a spec
    only our rules leave without candidates stays in, so the failed solve names the rule."""
    suspects = [s for s in specs if not has_candidate(narrowed, s)]
    if not suspects:
        return []
    everything = _universe(ctx, fetcher, channel, platform, narrowed=False)
    return [s for s in suspects if not has_candidate(everything, s)]


def unavailable_message(spec: str, platform: str) -> str:
    return f"'{spec}' has no candidate for {platform} upstream: {platform} is solved without it"


def _diagnose(
    ctx: SyncContext,
    fetcher: Fetcher,
    channel: ChannelConfig,
    platform: str,
    specs: Sequence[str],
    virtual: Sequence[str],
    narrowed: Universe,
    message: str,
) -> tuple[str, Closure]:
    """A failed solve: would it solve without our rules? Then name the rule and the record,
    and return the rest of that solution (the records our rules allow) to mirror anyway."""
    where = f"{platform}" + (f" ({' '.join(specs)})" if specs else "")
    everything = _universe(ctx, fetcher, channel, platform, narrowed=False)
    partial = Closure(selected={}, problems=[], warnings=[])
    try:
        solved = solve_available(ctx, everything, specs, virtual)
    except SolveError:
        return f"{where}: the specs do not solve even against all of upstream: {message}", partial
    explained = explain_solution(solved, specs, platform).selected
    blocked = []
    available = {c.key for c, _ in solved if _is_available(narrowed, c)}
    members = {m.name: m for m in _resolution_order(ctx, channel)}
    for candidate, _ in solved:
        if candidate.key in available:
            partial.selected[candidate.key] = explained[candidate.key]
            continue
        rules = members[candidate.channel].filters
        rule = removal_reason(candidate.record, rules, narrowed.now_ms)
        reason = explained.get(candidate.key)
        via = (
            f"{reason.parent[2]} needs '{reason.spec}'"
            if reason and reason.parent
            else (f"asked for by '{reason.spec}'" if reason else "the solve")
        )
        blocked.append(f"{candidate.label} ({via}) is removed by {rule}")
    if not blocked:
        return f"{where}: does not solve: {message}", partial
    return f"{where}: does not solve because " + "; ".join(blocked[:5]), partial


def _is_available(universe: Universe, candidate: Candidate) -> bool:
    return any(c.key == candidate.key for c in universe.available(candidate.record.fields.name))
