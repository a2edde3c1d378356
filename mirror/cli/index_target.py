"""What `mirror index PATH` indexes: a channel folder on this host, or one kept in a bucket
(`s3://bucket/prefix/channel`), with the state directory and the writer lock that go with it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.store import ChannelMarker, ChannelTree, local_tree
from mirror.config import load_config
from mirror.config.model import StorageSettings
from mirror.core.bucket_location import BucketLocation
from mirror.errors import MirrorError, UsageError
from mirror.publish.tree import TreeWriter, bucket_store


@dataclass
class IndexTarget:
    tree: ChannelTree  # the tree the channel folder is in
    channel: str
    shown: str  # the channel as the user named it: a path or an s3:// URL
    state_dir: Path
    writer: TreeWriter


def resolve_target(
    path: str, state_dir: str | None, config: str | None, env: Mapping[str, str]
) -> IndexTarget:
    if path.startswith("s3://"):
        return _bucket_target(path.rstrip("/"), state_dir, config, env)
    channel_dir = Path(path).expanduser().absolute()
    if not channel_dir.is_dir():
        raise UsageError(f"{channel_dir}: not a directory; give the channel folder")
    tree = local_tree(channel_dir.parent)
    channel = _checked_name(tree, channel_dir.name, str(channel_dir))
    chosen = index_state_dir(str(channel_dir.resolve()), tree.marker(channel), state_dir, env)
    writer = TreeWriter(chosen, root=channel_dir.parent)
    return IndexTarget(tree, channel, str(channel_dir), chosen, writer)


def _bucket_target(
    url: str, state_dir: str | None, config: str | None, env: Mapping[str, str]
) -> IndexTarget:
    """The endpoint, region and addressing come from `--config`'s storage block, else from
    the AWS environment (AWS_ENDPOINT_URL, AWS_REGION); credentials always from the latter."""
    parent_url, _, name = url.rpartition("/")
    if parent_url in ("s3:", "s3:/"):
        raise UsageError(f"{url}: give the channel's folder, s3://<bucket>[/<prefix>]/<channel>")
    loaded = load_config(Path(config).expanduser().absolute()) if config else None
    settings = loaded.bucket if loaded else None
    storage = loaded.storage if loaded else StorageSettings()
    try:
        parent = BucketLocation.from_url(
            parent_url,
            endpoint_url=settings.endpoint_url if settings else None,
            region=settings.region if settings else None,
            addressing=settings.addressing if settings else "path",
        )
    except MirrorError as exc:
        raise UsageError(f"{url}: {exc}") from None
    home = index_state_dir(url, None, state_dir, env)  # only to stage and lock before reading
    tree = ChannelTree(bucket_store(parent, home, storage.max_uploads))
    channel = _checked_name(tree, name, url)
    chosen = index_state_dir(url, tree.marker(channel), state_dir, env)
    if chosen != home:
        tree = ChannelTree(bucket_store(parent, chosen, storage.max_uploads))
    writer = TreeWriter(chosen, bucket=parent, lease_ttl_s=storage.lease_ttl_s,
                        max_uploads=storage.max_uploads)  # fmt: skip
    return IndexTarget(tree, channel, url, chosen, writer)


def _checked_name(tree: ChannelTree, name: str, shown: str) -> str:
    try:
        return tree.channel_key(name)
    except MirrorError:
        raise UsageError(
            f"{shown}: a channel folder name may hold only letters, digits, '.', '_', '-'"
        ) from None


def index_state_dir(
    shown: str, marker: ChannelMarker | None, given: str | None, env: Mapping[str, str]
) -> Path:
    """Where `mirror index` keeps its catalog: never inside the published tree, and for a
    channel a sync, the daemon or an import keeps, nowhere: those are refused (their records
    are not the packages' own, and rebuilding them from files would lose upstream's)."""
    if marker is not None and marker.kind != "local":
        keeper = f" with the config {marker.config}" if marker.config else ""
        raise UsageError(
            f"{shown} is a {marker.kind} channel, kept{keeper} (state in "
            f"{marker.state_dir}); its records come from upstream or a bundle, not from the "
            "package files, so `mirror index` would lose them: use `mirror sync` or "
            "`mirror verify --repair` with that config instead"
        )
    chosen = Path(given).expanduser().absolute() if given else None
    kept = Path(marker.state_dir) if marker is not None else None
    if chosen is not None and kept is not None and chosen != kept:
        raise UsageError(
            f"{shown} is indexed with the state in {kept}; run without --state-dir, or "
            f"with --state-dir {kept} (another catalog would not know what is published)"
        )
    if chosen is not None:
        return chosen
    if kept is not None:
        return kept
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(shown.encode()).hexdigest()[:8]
    name = shown.rstrip("/").rpartition("/")[2]
    return base / "mirror" / "index" / f"{name}-{digest}"
