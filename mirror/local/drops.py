"""Use case: admit complete files from a drop folder into a channel, then publish -> DropReport.

Each file is validated before it moves (readable, safe, its metadata agreeing with its name,
a subdir the channel serves), moved into `<channel>/<subdir>/` without ever overwriting a
published file, recorded in the catalog, and the touched subdirs are published at once.
A file whose name is already published is dropped when its bytes are identical and
quarantined when they differ. Bad files go to quarantine with a reason; the rest go on.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirror.adapters.archive import PackageInfo, read_package
from mirror.adapters.catalog import Catalog, CatalogFile
from mirror.adapters.store import ChannelTree, Quarantine
from mirror.config.model import ChannelConfig
from mirror.core.package_records import InvalidPackage
from mirror.core.records import is_safe_filename
from mirror.core.tree_store import join
from mirror.errors import ArchiveError, StoreError
from mirror.local.indexer import local_row, package_record
from mirror.publish.channel import publish_channeldata
from mirror.publish.names import NOARCH, REPODATA_JSON
from mirror.publish.settings import channeldata_enabled, settings_for
from mirror.publish.subdir import publish_subdir
from mirror.reports import DropOutcome, DropReport, DropResult

log = logging.getLogger(__name__)

DROPS_SUBDIR = "_drops"  # quarantine folder of files that never reached a subdir


@dataclass
class DropContext:
    tree: ChannelTree
    catalog: Catalog
    quarantine: Quarantine
    fresh_s: float = 5.0  # a failing file modified this recently may still be being written
    clock: Callable[[], float] = time.time
    on_outcome: Callable[[DropOutcome], None] = field(default=lambda outcome: None)


def admit_drops(ctx: DropContext, channel: ChannelConfig, paths: Sequence[Path]) -> DropReport:
    started = time.monotonic()
    outcomes: list[DropOutcome] = []
    rows: dict[str, list[CatalogFile]] = {}
    for path in paths:
        outcome, row = _admit(ctx, channel, path)
        outcomes.append(outcome)
        if row is not None and outcome.subdir is not None:
            rows.setdefault(outcome.subdir, []).append(row)
    published = []
    if rows:
        with ctx.catalog.transaction():
            refused = {
                subdir: ctx.catalog.put_files(channel.name, subdir, subdir_rows)
                for subdir, subdir_rows in rows.items()
            }
        outcomes = _take_back(ctx, channel, outcomes, refused)
    for outcome in outcomes:  # counted once each file's fate is known, before publishing
        ctx.on_outcome(outcome)
    if rows:
        local = not channel.mirrored
        for subdir in sorted(rows):
            settings = settings_for(channel.index, subdir, local_channel=local)
            published.append(publish_subdir(ctx.tree, ctx.catalog, channel.name, subdir, settings))
        if (
            NOARCH not in rows
            and ctx.tree.stat(join(ctx.tree.subdir_key(channel.name, NOARCH), REPODATA_JSON))
            is None
        ):
            settings = settings_for(channel.index, NOARCH, local_channel=local)
            publish_subdir(ctx.tree, ctx.catalog, channel.name, NOARCH, settings, force=True)
        publish_channeldata(
            ctx.tree,
            ctx.catalog,
            channel.name,
            channel.subdirs,
            channel.index,
            enabled=channeldata_enabled(channel.index, local),
        )
    return DropReport(channel.name, tuple(outcomes), tuple(published), time.monotonic() - started)


def _take_back(
    ctx: DropContext,
    channel: ChannelConfig,
    outcomes: list[DropOutcome],
    refused: dict[str, dict[str, str]],
) -> list[DropOutcome]:
    """Files already in the tree whose catalog rows SQLite refused go to quarantine (no index
    will name them); the rest of the batch is published as usual."""
    kept = []
    for outcome in outcomes:
        name = outcome.source.name
        why = refused.get(outcome.subdir or "", {}).get(name)
        if outcome.result != DropResult.PUBLISHED or why is None:
            kept.append(outcome)
            continue
        key = ctx.tree.package_key(channel.name, outcome.subdir or "", name)
        ctx.quarantine.take(ctx.tree, key, channel.name, outcome.subdir or "", f"catalog: {why}")
        log.warning("%s: quarantined %s (catalog): %s", channel.name, name, why)
        kept.append(DropOutcome(outcome.source, DropResult.QUARANTINED, outcome.subdir,
                                "catalog", why))  # fmt: skip
    return kept


def _admit(
    ctx: DropContext, channel: ChannelConfig, path: Path
) -> tuple[DropOutcome, CatalogFile | None]:
    name = path.name
    try:
        before = path.lstat()
    except FileNotFoundError:
        return DropOutcome(path, DropResult.IGNORED, message="gone before it could be taken"), None
    if stat.S_ISDIR(before.st_mode):
        log.warning("%s: %s is a directory, not a package file; left alone", channel.name, path)
        return DropOutcome(
            path, DropResult.IGNORED, reason="not_a_file", message="a directory"
        ), None
    if not stat.S_ISREG(before.st_mode):
        kind = "a symlink" if stat.S_ISLNK(before.st_mode) else "not a regular file"
        return _reject(
            ctx, channel, path, "not_a_file", f"{name} is {kind}; drop the package file itself"
        ), None
    if not is_safe_filename(name):
        return _reject(
            ctx,
            channel,
            path,
            "unsafe_name",
            f"{name!r} is not a plain <name>-<version>-<build>.conda/.tar.bz2 name",
        ), None
    try:
        info = read_package(path, deep=True)
        subdir = _subdir_of(info, channel)
        record = package_record(name, subdir, info)
    except (ArchiveError, InvalidPackage, _WrongSubdir) as exc:
        if ctx.clock() - before.st_mtime < ctx.fresh_s:
            return DropOutcome(path, DropResult.DEFERRED, message=str(exc)), None
        reason = getattr(exc, "reason", "invalid_metadata")
        if reason == "io":
            log.error("%s: cannot read %s: %s", channel.name, path, exc)
            return DropOutcome(path, DropResult.IGNORED, reason="io", message=str(exc)), None
        # archive errors name the file already; the .reason must name it whatever went wrong
        message = str(exc) if isinstance(exc, ArchiveError) else f"{name}: {exc}"
        return _reject(ctx, channel, path, reason, message), None
    if _changed_since(path, before):
        return DropOutcome(path, DropResult.DEFERRED, message="changed while being read"), None
    return _install(ctx, channel, path, subdir, info, record)


class _WrongSubdir(ValueError):
    reason = "wrong_subdir"


def _subdir_of(info: PackageInfo, channel: ChannelConfig) -> str:
    subdir = info.index.get("subdir")
    if not isinstance(subdir, str):
        subdir = NOARCH if info.index.get("noarch") else ""
    if subdir not in channel.subdirs:
        raise _WrongSubdir(
            f"the package is for subdir {subdir or '(none)'}, which channel {channel.name} does "
            f"not serve ({', '.join(channel.subdirs)}); add it to the channel's subdirs"
        )
    return subdir


def _install(
    ctx: DropContext,
    channel: ChannelConfig,
    path: Path,
    subdir: str,
    info: PackageInfo,
    record: bytes,
) -> tuple[DropOutcome, CatalogFile | None]:
    key = ctx.tree.package_key(channel.name, subdir, path.name)
    if ctx.tree.stat(key) is not None:
        return _collision(ctx, channel, path, subdir, key, info), None
    try:
        landed = ctx.tree.adopt(path, key)
    except FileExistsError:
        return _collision(ctx, channel, path, subdir, key, info), None
    except OSError as exc:
        raise StoreError(
            f"cannot move {path} into {ctx.tree.shown(key)}: {exc.strerror or exc}"
        ) from exc
    row = local_row(path.name, landed, info, record, int(ctx.clock() * 1000))
    return DropOutcome(path, DropResult.PUBLISHED, subdir=subdir), row


def _collision(
    ctx: DropContext,
    channel: ChannelConfig,
    path: Path,
    subdir: str,
    key: str,
    info: PackageInfo,
) -> DropOutcome:
    _, published_sha256, _ = ctx.tree.digest(key, with_md5=False)
    if published_sha256 == info.sha256:
        path.unlink()
        log.info(
            "%s/%s: %s is already published with identical bytes; removed the duplicate",
            channel.name,
            subdir,
            path.name,
        )
        return DropOutcome(path, DropResult.DUPLICATE, subdir=subdir)
    return _reject(
        ctx,
        channel,
        path,
        "name_conflict",
        f"a different file named {path.name} is already published in {subdir}; published "
        "files are never overwritten: rebuild with a new build number or version",
    )


def _changed_since(path: Path, before: os.stat_result) -> bool:
    try:
        now = path.lstat()
    except FileNotFoundError:
        return True
    return (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


def _reject(
    ctx: DropContext, channel: ChannelConfig, path: Path, reason: str, message: str
) -> DropOutcome:
    subdir = DROPS_SUBDIR
    try:
        moved = ctx.quarantine.move(path, channel.name, subdir, f"{reason}: {message}")
    except OSError as exc:
        log.error("%s: cannot quarantine %s (%s): %s", channel.name, path, exc.strerror, message)
        return DropOutcome(path, DropResult.IGNORED, reason=reason, message=message)
    log.warning(
        "%s: quarantined %s (%s): %s -> %s", channel.name, path.name, reason, message, moved
    )
    return DropOutcome(path, DropResult.QUARANTINED, reason=reason, message=message)
