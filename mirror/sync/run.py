"""Use case: mirror the configured channels' subdirs into the tree -> SyncReport.

Per subdir (sync_subdir.py): fetch repodata (conditionally) -> select records -> plan against
what is on disk -> guard against mass deletion -> download and verify -> publish -> prune.
Here: the wiring (lock, catalog, one http client) and the channel-level outputs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import ChannelMarker
from mirror.adapters.upstream import make_http_client
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.secrets import Redactor, url_secrets
from mirror.progress import NoProgress, Progress
from mirror.publish.channel import publish_channeldata
from mirror.publish.names import NOARCH
from mirror.publish.recompress import recompress
from mirror.publish.settings import channeldata_enabled, settings_for
from mirror.publish.snapshot import snapshot_channel
from mirror.publish.subdir import ensure_noarch
from mirror.publish.tree import TreeWriter, open_tree
from mirror.reports import CheckResult, DanglingReport, SubdirReport, SyncReport
from mirror.sync.check import run_checks
from mirror.sync.closure import ClosurePlan, plan_closures
from mirror.sync.context import SyncContext, SyncOptions
from mirror.sync.dangling import check_dangling
from mirror.sync.subdir import SubdirSync

log = logging.getLogger(__name__)


def run_sync(
    config: MirrorConfig,
    options: SyncOptions,
    *,
    redactor: Redactor | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
) -> SyncReport:
    """Open what a sync needs (writer lock, catalog, one http client), run it, close it all."""
    with sync_context(config, redactor, stop, progress, env, write=not options.dry_run) as ctx:
        return sync(ctx, options)


@contextlib.contextmanager
def sync_context(
    config: MirrorConfig,
    redactor: Redactor | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
    *,
    write: bool,
) -> Iterator[SyncContext]:
    """The writer lock (when writing), the catalog and one http client, closed afterwards."""
    redactor = redactor or Redactor()
    for channel in config.channels:
        redactor.add(url_secrets(channel.upstream or ""))
    lock = TreeWriter.for_config(config)
    if write:
        lock.acquire()
    try:
        per_host = max(c.transfer.max_connections_per_host for c in config.channels)
        # a file://-only config never pays for TLS set-up
        needs_http = any(c.upstream and not c.upstream.startswith("file:") for c in config.channels)
        with contextlib.ExitStack() as stack:
            http = stack.enter_context(make_http_client(per_host)) if needs_http else None
            catalog = stack.enter_context(Catalog.in_state_dir(config.state_dir))
            yield SyncContext(
                config=config,
                tree=open_tree(config),
                catalog=catalog,
                http=http,
                redactor=redactor,
                stop=stop or threading.Event(),
                progress=progress or NoProgress(),
                env=dict(env if env is not None else os.environ),
            )
    finally:
        lock.release()


def sync(ctx: SyncContext, options: SyncOptions) -> SyncReport:
    reports: list[SubdirReport] = []
    dangling: list[DanglingReport] = []
    wanted = [
        c.name
        for c in ctx.config.channels
        if c.mirrored and (not options.channels or c.name in options.channels)
    ]
    closures = plan_closures(ctx, wanted, expand=not options.only_named)
    if not options.only_named:
        wanted += closures.extra_channels  # a closure pins files there: they must arrive too
    if not options.dry_run:  # what `mirror status` shows of each closure until the next one
        for name in dict.fromkeys([*wanted, *closures.computed]):
            ctx.catalog.set_closure_notes(name, closures.notes(name))
    for channel in ctx.config.channels:
        if channel.name in wanted:
            channel_reports, channel_dangling = _sync_channel(ctx, channel, options, closures)
            reports.extend(channel_reports)
            dangling.extend(channel_dangling)
    problems = tuple(f"{name}: {p}" for name, ps in closures.problems.items() for p in ps)
    checks: tuple[CheckResult, ...] = ()
    if not options.dry_run and not ctx.stop.is_set():
        checks = tuple(run_checks(ctx.config, wanted, closures.unavailable))
    return SyncReport(tuple(reports), problems=problems, checks=checks, dangling=tuple(dangling))


def _sync_channel(
    ctx: SyncContext, channel: ChannelConfig, options: SyncOptions, closures: ClosurePlan
) -> tuple[list[SubdirReport], list[DanglingReport]]:
    """The channel's subdirs, then its channel-level outputs and the dangling check."""
    if not options.dry_run:
        _start_channel(ctx, channel)
    reports = []
    subdirs = [s for s in channel.subdirs if not options.subdirs or s in options.subdirs]
    for subdir in subdirs:
        if ctx.stop.is_set():
            break
        closure = closures.for_subdir(channel.name, subdir)
        report = SubdirSync(ctx, channel, subdir, options, closure).run()
        if options.final_zst and not options.dry_run:
            recompress(ctx.tree, ctx.catalog, channel.name, subdir)
        log.log(logging.INFO if report.ok else logging.ERROR, "%s", ctx.redactor(report.summary()))
        reports.append(report)
        ctx.between_subdirs()
    if options.dry_run or ctx.stop.is_set():
        return reports, []
    _finish_channel(ctx, channel, reports)
    return reports, check_dangling(ctx, channel, subdirs)


def _start_channel(ctx: SyncContext, channel: ChannelConfig) -> None:
    """Before any subdir: say who keeps the channel (so `mirror index` never rebuilds its
    upstream records from files), and give it noarch/repodata.json, which conda requires of
    every channel, from its first moment (a run killed in its first subdir leaves one)."""
    config = ctx.config
    ctx.tree.mark_channel(
        channel.name, ChannelMarker("mirrored", str(config.state_dir), str(config.source))
    )
    ensure_noarch(
        ctx.tree,
        ctx.catalog,
        channel.name,
        settings_for(channel.index, NOARCH, local_channel=False),
    )


def _finish_channel(ctx: SyncContext, channel: ChannelConfig, reports: list[SubdirReport]) -> None:
    enabled = channeldata_enabled(channel.index, local_channel=False)
    publish_channeldata(
        ctx.tree, ctx.catalog, channel.name, channel.subdirs, channel.index, enabled=enabled
    )
    changed = any(r.repodata_changed or r.downloaded_files or r.deleted_files for r in reports)
    snapshot_channel(ctx.tree, ctx.config.state_dir, ctx.catalog, channel.name, changed=changed)


__all__ = ["SyncContext", "SyncOptions", "run_sync", "sync"]
