"""The channel tree in a local directory, its layout over any tree store, and the quarantine.

`ChannelTree` (tree.py) builds and checks every key and works over any `TreeStore`
(mirror/core/tree_store.py): `LocalStore` here, or the object store in adapters/objectstore.
"""

from __future__ import annotations

from pathlib import Path

from mirror.adapters.store.hashing import hash_file, hash_stream, sha256_file
from mirror.adapters.store.local import TEMP_PREFIX, TEMP_SUFFIX, LocalStore, sync_directory
from mirror.adapters.store.quarantine import QUARANTINE_DIR, Quarantine
from mirror.adapters.store.tree import CHANNEL_MARKER, ChannelMarker, ChannelTree
from mirror.core.tree_store import FileStat


def local_tree(root: Path) -> ChannelTree:
    """The tree in a directory on this host."""
    return ChannelTree(LocalStore(root))


def read_marker(channel_dir: Path) -> ChannelMarker | None:
    """Who keeps a channel folder on this host (None: nobody said)."""
    try:
        return ChannelMarker.from_bytes((channel_dir / CHANNEL_MARKER).read_bytes())
    except OSError:
        return None


__all__ = [
    "CHANNEL_MARKER",
    "QUARANTINE_DIR",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "ChannelMarker",
    "ChannelTree",
    "FileStat",
    "LocalStore",
    "Quarantine",
    "hash_file",
    "hash_stream",
    "local_tree",
    "read_marker",
    "sha256_file",
    "sync_directory",
]
