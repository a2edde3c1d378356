"""Opening the tree a configuration names: a directory on this host (an s3:// root comes with
the object store)."""

from __future__ import annotations

from mirror.adapters.store import ChannelTree, local_tree
from mirror.config.model import MirrorConfig


def open_tree(config: MirrorConfig) -> ChannelTree:
    return local_tree(config.root)
