"""The manifest of an export bundle: what it holds, where, and which snapshot it leads to.

A bundle is a folder: `manifest.json`, `manifest.json.sha256` (sha256sum format), optionally
`manifest.json.sig`, and the data parts `data.0001.tar`, `data.0002.tar`, ... The parts are one
tar stream cut into pieces no larger than the split size (`cat data.*.tar | tar -x` restores
the files by hand); the manifest gives each file's byte offset in that stream, so an import
reads a file straight from the parts without parsing tar. Untrusted input: every path, size,
hash and offset is checked here before anything is read.
"""

from __future__ import annotations

import re

import msgspec

from mirror.errors import BundleError

FORMAT = "mirror-bundle"
VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.json.sha256"
SIGNATURE = "manifest.json.sig"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SEGMENT = re.compile(r"[A-Za-z0-9_+=!-][A-Za-z0-9_.+=!-]{0,250}")
_PACKAGE_EXTENSIONS = (".conda", ".tar.bz2")


def part_name(number: int) -> str:
    return f"data.{number:04d}.tar"


class SnapshotRef(msgspec.Struct, frozen=True):
    id: int
    digest: str


class BundleFile(msgspec.Struct, frozen=True):
    path: str  # <channel>/<subdir>/<name> or <channel>/<name>, '/'-separated
    size: int
    sha256: str
    offset: int = -1  # in the data stream; -1 in index listings (not carried)


class ChannelChange(msgspec.Struct, frozen=True):
    channel: str
    source: SnapshotRef | None  # None: a full bundle, valid for any tree
    target: SnapshotRef
    deleted: tuple[str, ...]  # channel-relative paths present at source, gone at target
    index: tuple[BundleFile, ...]  # every index file of the target (repodata, shards, ...)


class BundlePart(msgspec.Struct, frozen=True):
    name: str
    size: int
    sha256: str


class Manifest(msgspec.Struct, frozen=True):
    format: str
    version: int
    created_at: float
    channels: tuple[ChannelChange, ...]
    files: tuple[BundleFile, ...]  # added or changed files, with their offsets
    parts: tuple[BundlePart, ...]
    stream_size: int

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def encode(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=1) + b"\n"


def decode(data: bytes, source: str) -> Manifest:
    """Parse and check a manifest; BundleError names `source` and the first problem."""
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BundleError(f"{source}: not a bundle manifest ({exc})") from None
    if manifest.format != FORMAT:
        raise BundleError(f"{source}: format {manifest.format!r} is not {FORMAT!r}")
    if manifest.version != VERSION:
        raise BundleError(
            f"{source}: bundle format version {manifest.version}; this mirror reads version "
            f"{VERSION}: import it with the mirror version that wrote it"
        )
    problem = _problem(manifest)
    if problem:
        raise BundleError(f"{source}: {problem}; the bundle is damaged or not ours")
    return manifest


def _problem(manifest: Manifest) -> str | None:
    channels = {c.channel for c in manifest.channels}
    if len(channels) != len(manifest.channels):
        return "a channel is listed twice"
    for change in manifest.channels:
        if not _SEGMENT.fullmatch(change.channel):
            return f"bad channel name {change.channel!r}"
        for ref in (change.source, change.target):
            if ref is not None and not _HEX64.fullmatch(ref.digest):
                return f"{change.channel}: a snapshot digest is not 64 hex digits"
        for path in change.deleted:
            if not is_safe_path(path):
                return f"{change.channel}: unsafe deleted path {path!r}"
        for item in change.index:
            if not is_safe_path(item.path) or not _HEX64.fullmatch(item.sha256) or item.size < 0:
                return f"{change.channel}: bad index entry {item.path!r}"
    position = 0
    for item in sorted(manifest.files, key=lambda f: f.offset):
        channel = item.path.split("/", 1)[0]
        if channel not in channels or not is_safe_path(item.path.split("/", 1)[-1]):
            return f"unsafe or unlisted file path {item.path!r}"
        if not _HEX64.fullmatch(item.sha256) or item.size < 0:
            return f"{item.path}: bad size or sha256"
        if item.offset < position or item.offset + item.size > manifest.stream_size:
            return f"{item.path}: its bytes overlap another file or lie past the data"
        position = item.offset + item.size
    if len({f.path for f in manifest.files}) != len(manifest.files):
        return "a file is listed twice"
    names = [p.name for p in manifest.parts]
    if names != [part_name(i + 1) for i in range(len(names))]:
        return "parts are not data.0001.tar, data.0002.tar, ... in order"
    if sum(p.size for p in manifest.parts) != manifest.stream_size:
        return "the parts' sizes do not add up to the data stream"
    if any(not _HEX64.fullmatch(p.sha256) or p.size < 0 for p in manifest.parts):
        return "a part has a bad size or sha256"
    return None


def is_safe_path(path: str) -> bool:
    """A relative '/'-separated path of plain names: nothing that could leave the tree."""
    parts = path.split("/")
    return bool(path) and len(parts) <= 4 and all(_SEGMENT.fullmatch(p) for p in parts)


def is_package(path: str) -> bool:
    return path.endswith(_PACKAGE_EXTENSIONS) and "/shards/" not in path


def apply_rank(path: str) -> int:
    """The safe order to install files in: packages before anything that names them, shards
    before the shard index, the shard index and .zst before repodata.json, side files last
    (current_repodata.json.zst before current_repodata.json)."""
    name = path.rsplit("/", 1)[-1]
    if is_package(path):
        return 0
    if "/shards/" in path:
        return 1
    if name == "repodata_shards.msgpack.zst":
        return 2
    if name.startswith("repodata.json") and name != "repodata.json":
        return 3
    if name == "repodata.json":
        return 4
    if name == "current_repodata.json.zst":
        return 5
    return 6
