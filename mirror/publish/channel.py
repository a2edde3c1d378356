"""Use case: channeldata.json at the channel root (CEP-38), recomputed only for the package names
that changed since it was written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

from mirror import __version__
from mirror.adapters.catalog import CHANNEL_ROOT, Catalog, OutputStat
from mirror.adapters.patch_source import load_patches
from mirror.adapters.store import ChannelTree
from mirror.config.model import IndexSettings
from mirror.core.patches import PatchSet
from mirror.core.side_indexes import (
    ChannelEntry,
    channeldata_document,
    channeldata_packages,
    summarize,
)
from mirror.publish.names import (
    CHANNELDATA,
)
from mirror.publish.records import final_record


def publish_channeldata(
    tree: ChannelTree,
    catalog: Catalog,
    channel: str,
    subdirs: Iterable[str],
    index: IndexSettings,
    *,
    enabled: bool,
) -> bool:
    """channeldata.json at the channel root (CEP-38), from every subdir's published records.

    Only the package names whose records changed since it was written are recomputed (the
    rest is taken from the file as written); removed when switched off, never left stale."""
    path = f"{tree.channel_key(channel)}/{CHANNELDATA}"
    if not enabled:
        tree.remove(path)
        if CHANNELDATA in catalog.outputs(channel, CHANNEL_ROOT):
            catalog.drop_outputs(channel, CHANNEL_ROOT, [CHANNELDATA])
        return False
    subdirs = sorted(subdirs)
    patches = {subdir: load_patches(index.patch_instructions, subdir) for subdir in subdirs}
    key = hashlib.sha256(
        repr((__version__, subdirs, [p.digest for p in patches.values()])).encode()
    ).hexdigest()
    dirty = catalog.channel_dirty(channel)
    packages = _written_channeldata(tree, catalog, channel, path, key)
    if packages is None:
        packages = channeldata_packages(_channel_entries(catalog, channel, patches, None))
    elif dirty:
        for name in dirty:
            packages.pop(name, None)
        packages.update(channeldata_packages(_channel_entries(catalog, channel, patches, dirty)))
    else:
        return False
    written = tree.write_if_changed(path, channeldata_document(subdirs, packages))
    stat = tree.stat(path)
    with catalog.transaction():
        if stat is not None:
            catalog.put_outputs(
                channel, CHANNEL_ROOT, {CHANNELDATA: OutputStat(stat.size, stat.mtime_ns, key)}
            )
        catalog.clear_channel_dirty(channel, dirty)
    return written


def _written_channeldata(
    tree: ChannelTree, catalog: Catalog, channel: str, path: str, key: str
) -> dict[str, Any] | None:
    """The packages of the channeldata.json we last wrote, if it is still exactly that."""
    recorded = catalog.outputs(channel, CHANNEL_ROOT).get(CHANNELDATA)
    stat = tree.stat(path)
    if recorded is None or stat is None or recorded.render_key != key:
        return None
    if (stat.size, stat.mtime_ns) != (recorded.size, recorded.mtime_ns):
        return None
    try:
        document = msgspec.json.decode(tree.read(path))
    except (OSError, msgspec.DecodeError):
        return None
    packages = document.get("packages") if isinstance(document, dict) else None
    return dict(packages) if isinstance(packages, dict) else None


def _channel_entries(
    catalog: Catalog, channel: str, patches: dict[str, PatchSet], names: set[str] | None
) -> list[ChannelEntry]:
    """Records of the given package names (all when None) across the subdirs, as published."""
    entries = []
    for subdir, patch_set in patches.items():
        if names is None:
            stored_records = list(catalog.records(channel, subdir))
            extras = {fn: (re, ab) for fn, re, ab in catalog.extras(channel, subdir)}
        else:
            stored_records = [
                r for name in names for r in catalog.records_named(channel, subdir, name)
            ]
            extras = catalog.extras_of(channel, subdir, (r.filename for r in stored_records))
        for stored in stored_records:
            final = final_record(stored, patch_set)
            summary = summarize(final) if final is not None else None
            if summary is None:
                continue
            run_exports, about = extras.get(stored.filename, (None, None))
            entries.append(
                ChannelEntry(subdir, summary, _json_object(about), _json_object(run_exports))
            )
    return entries


def _json_object(data: bytes | None) -> dict[str, object] | None:
    if data is None:
        return None
    decoded = msgspec.json.decode(data)
    return decoded if isinstance(decoded, dict) else None
