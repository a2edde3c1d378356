"""Solving a closure's specs with py-rattler over the records available, and explaining the
solution record by record (which spec or dependency asked for each)."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict, deque
from collections.abc import Sequence
from pathlib import Path

import msgspec

from mirror.adapters.solver import SolveSource, solve
from mirror.core.closure import (
    Candidate,
    Closure,
    Key,
    Reason,
    Universe,
    dependency_name,
)
from mirror.sync.closure_fetch import scratch_dir
from mirror.sync.context import SyncContext


def solve_available(
    ctx: SyncContext, universe: Universe, specs: Sequence[str], virtual: Sequence[str]
) -> list[tuple[Candidate, tuple[str, ...]]]:
    """Solve over the available records of the names the specs can reach, written to small
    temporary repodata files (rattler reads repodata from files)."""
    names = universe.reachable_names(dependency_name(s) or "" for s in specs)
    by_source: dict[tuple[str, str], dict[str, Candidate]] = defaultdict(dict)
    for name in names:
        for candidate in universe.available(name):
            by_source[(candidate.channel, candidate.subdir)][candidate.record.filename] = candidate
    scratch = Path(tempfile.mkdtemp(prefix="closure-", dir=scratch_dir(ctx)))
    try:
        sources: list[SolveSource] = []
        for source in universe.sources:
            path = scratch / f"{len(sources)}.json"
            write_repodata(path, source.subdir, by_source.get((source.channel, source.subdir), {}))
            sources.append(SolveSource(source.channel, source.subdir, path))
        solved = solve(sources, specs, virtual)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = []
    for record in solved:
        found = by_source.get((record.channel, record.subdir), {}).get(record.filename)
        if found is not None:
            out.append((found, record.depends))
    return out


def write_repodata(path: Path, subdir: str, records: dict[str, Candidate]) -> None:
    groups: dict[str, dict[str, msgspec.Raw]] = {"packages": {}, "packages.conda": {}}
    for filename, candidate in records.items():
        group = "packages.conda" if filename.endswith(".conda") else "packages"
        groups[group][filename] = msgspec.Raw(bytes(candidate.record.raw))
    path.write_bytes(msgspec.json.encode({"info": {"subdir": subdir}, **groups}))


def explain_solution(
    solved: list[tuple[Candidate, tuple[str, ...]]], specs: Sequence[str], context: str
) -> Closure:
    """The solution, each record with the spec (or parent's dependency) that asked for it."""
    by_name: dict[str, list[Candidate]] = defaultdict(list)
    depends: dict[Key, tuple[str, ...]] = {}
    for candidate, deps in solved:
        by_name[candidate.record.fields.name].append(candidate)
        depends[candidate.key] = deps
    selected: dict[Key, Reason] = {}
    queue: deque[Candidate] = deque()
    for spec in specs:
        for candidate in by_name.get(dependency_name(spec) or "", ()):
            if candidate.key not in selected:
                selected[candidate.key] = Reason(spec, None, context)
                queue.append(candidate)
    while queue:
        parent = queue.popleft()
        for dep in depends[parent.key]:
            for candidate in by_name.get(dependency_name(dep) or "", ()):
                if candidate.key not in selected:
                    selected[candidate.key] = Reason(dep, parent.key, context)
                    queue.append(candidate)
    for candidate, _ in solved:  # reached only through a constraint or a virtual name
        selected.setdefault(candidate.key, Reason("the solve", None, context))
    return Closure(selected=selected, problems=[], warnings=[])
