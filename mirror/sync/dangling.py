"""Use case: after a channel's sync, the records whose dependencies name packages it lacks.

What a client of a platform subdir installs from is that subdir plus noarch (and the channels
the closure resolves from, `dependencies.channels`); a noarch record may be satisfied by any of
the channel's subdirs. The answer is kept in the catalog with the basis it was computed from
(the published repodata of every subdir involved), so a sync that changed nothing reads it
back instead of decoding every record again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence

from mirror.adapters.catalog import Catalog
from mirror.config.model import ChannelConfig
from mirror.core.dangling import Dangling, DependencyRecord, dependency_record, find_dangling
from mirror.core.patches import patch_record
from mirror.publish.names import NOARCH, REPODATA_JSON
from mirror.publish.settings import settings_for
from mirror.reports import DanglingReport
from mirror.sync.context import SyncContext

log = logging.getLogger(__name__)


def check_dangling(
    ctx: SyncContext, channel: ChannelConfig, subdirs: Sequence[str]
) -> list[DanglingReport]:
    """One report per synced subdir; logs a warning for each that has dangling records."""
    members = [channel, *(c for n in channel.dependencies.channels if (c := ctx.config.channel(n)))]
    basis = _basis(ctx.catalog, members)
    stored = ctx.catalog.dangling(channel.name)
    if all(s in stored and stored[s][1] == basis for s in subdirs):
        found = {s: stored[s][0] for s in subdirs}
    else:
        found = _compute(ctx, channel, members)
        ctx.catalog.set_dangling(channel.name, found, basis)
    reports = [DanglingReport(channel.name, s, found.get(s, Dangling(0))) for s in subdirs]
    for report in reports:
        if report.found.records:
            log.warning("%s", ctx.redactor(report.warning()))
    return reports


def _compute(
    ctx: SyncContext, channel: ChannelConfig, members: Sequence[ChannelConfig]
) -> dict[str, Dangling]:
    records = {s: list(_published(ctx, channel, s)) for s in channel.subdirs}
    names = {s: {r.name for r in found} for s, found in records.items()}
    others: set[str] = set()  # what the channels it resolves from hold
    for member in members[1:]:
        for subdir in member.subdirs:
            others |= ctx.catalog.names(member.name, subdir)
    found = {}
    for subdir, mine in records.items():
        if subdir == NOARCH:  # any platform a client runs on may satisfy a noarch record
            elsewhere = set().union(*(n for s, n in names.items() if s != NOARCH))
        else:
            elsewhere = names.get(NOARCH, set())
        found[subdir] = find_dangling(mine, elsewhere | others)
    return found


def _published(ctx: SyncContext, channel: ChannelConfig, subdir: str) -> Iterator[DependencyRecord]:
    """The subdir's records as published: the patch instructions' fixes and removals applied."""
    patches = settings_for(channel.index, subdir, local_channel=False).patches
    for stored in ctx.catalog.records(channel.name, subdir):
        raw = patch_record(patches, stored.filename, stored.record)
        if raw is not None and (record := dependency_record(stored.filename, raw)) is not None:
            yield record


def _basis(catalog: Catalog, members: Sequence[ChannelConfig]) -> str:
    """Changes whenever the published repodata.json of any subdir involved does."""
    parts = []
    for member in members:
        for subdir in member.subdirs:
            stat = catalog.outputs(member.name, subdir).get(REPODATA_JSON)
            parts.append((member.name, subdir, stat.size, stat.mtime_ns) if stat else None)
    return hashlib.sha256(repr(parts).encode()).hexdigest()
