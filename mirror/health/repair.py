"""Use case: `mirror verify [--repair]`: check the tree, and put right what can be.

Repairs, so that a second verify is clean:
- a mirrored file that is missing or whose bytes are wrong: removed and fetched again from
  upstream (a sync of that channel, which re-plans because the catalog no longer vouches for it);
- a local file that is missing or wrong: moved to quarantine (or forgotten) and the subdir
  re-indexed;
- index files that disagree (json vs zst, shards): the subdir is published again from the
  catalog;
- temp files: deleted; package files nobody indexes: a mirrored leftover whose deletion was
  interrupted is deleted, anything else in a mirrored channel is quarantined, and a local
  channel's are indexed (or quarantined if they are bad).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import QUARANTINE_DIR, ChannelTree, Quarantine
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.plan import ORIGIN_MIRROR
from mirror.core.secrets import Redactor
from mirror.core.tree_store import join
from mirror.health.verify import verify
from mirror.local.indexer import IndexContext, index_subdir
from mirror.publish.settings import settings_for
from mirror.publish.subdir import publish_subdir
from mirror.publish.tree import TreeWriter, open_tree
from mirror.reports import Problem, ProblemKind, VerifyOutcome, VerifyReport
from mirror.sync.run import SyncOptions, run_sync

log = logging.getLogger(__name__)


def run_verify(
    config: MirrorConfig,
    channels: tuple[str, ...] = (),
    *,
    full: bool = False,
    repair: bool = False,
    redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None,
) -> VerifyOutcome:
    chosen = [c for c in config.channels if not channels or c.name in channels]
    targets = [(c.name, s) for c in chosen for s in c.subdirs]
    tree = open_tree(config)
    lock = TreeWriter.for_config(config)
    if repair:
        lock.acquire()  # a repair writes; a plain verify only reads
    try:
        with Catalog.in_state_dir(config.state_dir) as catalog:
            before = verify(tree, catalog, targets, full=full)
            if not repair or before.ok:
                return VerifyOutcome(before, None)
            resync = _fix(config, tree, catalog, chosen, before)
        if resync:
            lock.release()  # the sync takes the lock itself
            run_sync(config, SyncOptions(channels=tuple(resync)), redactor=redactor, env=env)
            lock.acquire()
        with Catalog.in_state_dir(config.state_dir) as catalog:
            after = verify(tree, catalog, targets, full=full)
        return VerifyOutcome(before, after, len(before.problems))
    finally:
        lock.release()


def _fix(
    config: MirrorConfig,
    tree: ChannelTree,
    catalog: Catalog,
    channels: list[ChannelConfig],
    report: VerifyReport,
) -> set[str]:
    """Put right what can be put right locally; the channels that need a sync."""
    by_name = {c.name: c for c in channels}
    quarantine = Quarantine(config.state_dir / QUARANTINE_DIR)
    resync: set[str] = set()
    republish: set[tuple[str, str]] = set()
    reindex: set[tuple[str, str]] = set()
    for problem in report.problems:
        channel = by_name[problem.channel]
        target = (problem.channel, problem.subdir)
        if problem.kind == ProblemKind.TEMP_FILE:
            tree.remove(join(tree.subdir_key(*target), problem.name))
        elif problem.kind in (ProblemKind.MISSING_FILE, ProblemKind.BAD_FILE):
            if _drop_file(tree, catalog, quarantine, channel, problem):
                resync.add(problem.channel)
            republish.add(target)
        elif problem.kind == ProblemKind.UNINDEXED:
            _unindexed(tree, catalog, quarantine, channel, problem)
            reindex.add(target)
        elif problem.kind in (ProblemKind.BAD_REPODATA, ProblemKind.STALE_INDEX):
            republish.add(target)
    for channel_name, subdir in sorted(reindex):
        channel = by_name[channel_name]
        ctx = IndexContext(tree=tree, catalog=catalog, quarantine=quarantine,
                           settings=channel.index, local_channel=not channel.mirrored)  # fmt: skip
        index_subdir(ctx, channel_name, subdir)
    for channel_name, subdir in sorted(republish):
        channel = by_name[channel_name]
        settings = settings_for(channel.index, subdir, local_channel=not channel.mirrored)
        publish_subdir(tree, catalog, channel_name, subdir, settings, force=True)
    return resync


def _drop_file(
    tree: ChannelTree,
    catalog: Catalog,
    quarantine: Quarantine,
    channel: ChannelConfig,
    problem: Problem,
) -> bool:
    """A record whose file is missing or wrong. True when upstream can supply it again."""
    key = join(tree.subdir_key(problem.channel, problem.subdir), problem.name)
    known = catalog.files_named(problem.channel, problem.subdir, [problem.name]).get(problem.name)
    mirrored = channel.mirrored and (known is None or known.origin == ORIGIN_MIRROR)
    if tree.stat(key) is not None:
        if mirrored:
            tree.remove(key)  # upstream has the right bytes; these are worth nothing
        else:
            reason = f"verify: {problem.message}"
            quarantine.take(tree, key, problem.channel, problem.subdir, reason)
    with catalog.transaction():
        catalog.remove_files(problem.channel, problem.subdir, [problem.name])
        if mirrored:
            catalog.forget_validators(problem.channel)  # else an unchanged upstream hides it
    log.info("%s: %s", problem, "fetching it again" if mirrored else "taken out of the index")
    return mirrored


def _unindexed(
    tree: ChannelTree,
    catalog: Catalog,
    quarantine: Quarantine,
    channel: ChannelConfig,
    problem: Problem,
) -> None:
    known = catalog.files_named(problem.channel, problem.subdir, [problem.name]).get(problem.name)
    key = join(tree.subdir_key(problem.channel, problem.subdir), problem.name)
    if known is not None and known.origin == ORIGIN_MIRROR:
        tree.remove(key)  # retired from the index, its deletion interrupted: finish it
        with catalog.transaction():
            catalog.remove_files(problem.channel, problem.subdir, [problem.name], mark_dirty=False)
    elif channel.mirrored and known is None:
        reason = "verify: a file in a mirrored channel that nothing selected or indexed"
        quarantine.take(tree, key, problem.channel, problem.subdir, reason)
    # anything else (a local file) is picked up by re-indexing the subdir
