"""Use case: do the channel's specs solve against the published tree, as a client would see it?

py-rattler reads the repodata.json files we published (nothing from upstream, nothing from our
state), with the platform's virtual packages, once per platform and dependency variant. The
last results are kept in the state directory for `mirror status`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from mirror.adapters.catalog import CATALOG_NAME, Catalog, ClosureNoteKind
from mirror.adapters.solver import SolveError, SolveSource, default_virtual_packages, solve
from mirror.adapters.state_files import write_atomically
from mirror.adapters.store import ChannelTree
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.tree_store import join
from mirror.publish.names import REPODATA_JSON
from mirror.publish.tree import open_tree
from mirror.reports import CheckResult

log = logging.getLogger(__name__)

RESULTS_FILE = "check.json"


def checked_channels(
    config: MirrorConfig, names: Iterable[str] | None = None
) -> list[ChannelConfig]:
    wanted = set(names) if names is not None else None
    return [
        c for c in config.channels if c.check is not None and (wanted is None or c.name in wanted)
    ]


def run_checks(
    config: MirrorConfig,
    names: Iterable[str] | None = None,
    unavailable: Mapping[tuple[str, str], Collection[str]] | None = None,
) -> list[CheckResult]:
    """Check each named channel that has `check:` (all of them when `names` is None).

    `unavailable`: per (channel, platform), include specs upstream has no candidate for on
    that platform, which its check leaves out as its closure did; by default what the last
    closure stored."""
    if unavailable is None:
        unavailable = _stored_unavailable(config)
    results = []
    for channel in checked_channels(config, names):
        results.extend(check_channel(config, channel, unavailable))
    if results:
        _save(config.state_dir / RESULTS_FILE, results)
    for result in results:
        if result.ok:
            log.info("%s/%s: %s solves (%s)", result.channel, result.platform,
                     " ".join(result.specs), result.message)  # fmt: skip
        else:
            log.error("%s", result.problem)
    return results


def check_channel(
    config: MirrorConfig,
    channel: ChannelConfig,
    unavailable: Mapping[tuple[str, str], Collection[str]],
) -> list[CheckResult]:
    assert channel.check is not None
    platforms = channel.check.platforms or channel.platforms
    explicit = bool(channel.check.specs)
    variants = channel.dependencies.variants if not explicit else ((),)
    results = []
    for platform in platforms:
        virtual = channel.dependencies.virtual_packages_for(platform)
        if virtual is None:
            virtual = default_virtual_packages(platform)
        base = list(channel.check.specs)
        if not explicit:
            absent = unavailable.get((channel.name, platform), ())
            base = [s.text for s in channel.filters.include if s.text not in absent]
            if absent and not base:
                continue  # nothing asked for exists on this platform: the closure solved nothing
        for variant in variants:
            specs = tuple(base) + tuple(variant)
            if specs:
                results.append(_check(config, channel, platform, specs, virtual))
    return results


def _stored_unavailable(config: MirrorConfig) -> dict[tuple[str, str], list[str]]:
    path = config.state_dir / CATALOG_NAME
    if not path.exists():  # never synced: no closure has left anything out
        return {}
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    with Catalog(path) as catalog:
        for channel in checked_channels(config):
            for note in catalog.closure_notes(channel.name):
                if note.kind == ClosureNoteKind.UNAVAILABLE and note.platform and note.spec:
                    found[(channel.name, note.platform)].append(note.spec)
    return found


def _check(
    config: MirrorConfig,
    channel: ChannelConfig,
    platform: str,
    specs: tuple[str, ...],
    virtual: Iterable[str],
) -> CheckResult:
    started = time.monotonic()
    tree = open_tree(config)
    keys = _published_keys(tree, config, channel, platform)
    with tree.local_files([key for _, _, key in keys]) as paths:
        sources = [
            SolveSource(name, subdir, path)
            for (name, subdir, _), path in zip(keys, paths, strict=True)
        ]
        try:
            if not sources:
                raise SolveError("nothing is published for this platform yet")
            solved = solve(sources, specs, virtual)
            ok, message = True, f"{len(solved)} packages"
        except SolveError as exc:
            ok, message = False, str(exc)
    return CheckResult(
        channel.name, platform, specs, ok, message, time.monotonic() - started, time.time()
    )


def _published_keys(
    tree: ChannelTree, config: MirrorConfig, channel: ChannelConfig, platform: str
) -> list[tuple[str, str, str]]:
    """(channel, subdir, key) of the published repodata a client of this channel reads, in
    channel priority order."""
    members = [channel, *(config.channel(n) for n in channel.dependencies.channels)]
    found = []
    for member in members:
        if member is None:
            continue
        for subdir in dict.fromkeys((platform, "noarch")):
            key = join(tree.subdir_key(member.name, subdir), REPODATA_JSON)
            if tree.stat(key) is not None:
                found.append((member.name, subdir, key))
    return found


def _save(path: Path, results: list[CheckResult]) -> None:
    """Merge into the last results file: a check of one channel keeps the others' results."""
    previous = load_results(path)
    fresh = {(r.channel, r.platform, r.specs) for r in results}
    kept = [r for r in previous if (r.channel, r.platform, r.specs) not in fresh]
    document = [asdict(r) for r in kept + results]
    try:
        write_atomically(path, json.dumps(document, indent=1).encode())
    except OSError as exc:
        log.warning("could not save check results to %s: %s", path, exc)


def load_results(path: Path) -> list[CheckResult]:
    try:
        document = json.loads(path.read_text())
        return [CheckResult(**{**item, "specs": tuple(item["specs"])}) for item in document]
    except (OSError, ValueError, TypeError, KeyError):
        return []
