"""CEP-16 from the upstream side: read a fetched shard index and resolve where its shards live.

Readers compared (conda 26.x `conda/_private/shards`, rattler `rattler_repodata_gateway`):
both join `info.shards_base_url` and `info.base_url` with the index's own URL, treat the result
as a directory (a missing trailing slash is added), and fetch
`<shards_base_url><lowercase hex sha256>.msgpack.zst`. Neither checks a shard's hash nor bounds
the index; conda caps a decompressed shard at 16 MiB and an index at 128 MiB. We do all three.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgpack
import zstandard

from mirror.core.secrets import redact_url
from mirror.errors import ShardError

MAX_INDEX_BYTES = 128 * 2**20  # conda's ZSTD_MAX_SHARD_INDEX_SIZE; conda-forge's is ~1.3 MB
MAX_INDEX_NAMES = 1_000_000  # conda-forge linux-64 has ~30,000 names
MAX_SHARD_BYTES = 16 * 2**20  # conda's ZSTD_MAX_SHARD_SIZE; conda-forge's largest is ~2.6 MB
FALLBACK = "the sync uses repodata.json instead"
# Compressed bytes fed to zstd per step. A 4-byte RLE block may expand to 128 KiB, so one step
# can overshoot the limit by at most ~8 MiB before it is noticed.
_FEED_BYTES = 256
# zstd at level 19 without a known content size uses an 8 MiB window: accept that much always
_MIN_WINDOW_LOG = 23
_HTTP = frozenset({"http", "https"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Unfit:
    """Stands in for a msgpack map that JSON cannot hold (a non-string or repeated key)."""

    reason: str


@dataclass(frozen=True)
class ShardIndex:
    """A parsed upstream shard index. `shards` maps package name -> lowercase hex sha256 of
    the shard file; `base_url` and `shards_base_url` are as upstream wrote them."""

    subdir: str
    base_url: str
    shards_base_url: str
    created_at: str | None
    shards: Mapping[str, str] = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shards", MappingProxyType(dict(self.shards)))


def decompress_bounded(data: bytes, limit_bytes: int, *, source: str, what: str) -> bytes:
    """Every zstd frame of `data`, refusing output past `limit_bytes` and truncated frames
    (a streaming reader returns a cut frame's prefix without complaint)."""
    if not data:
        raise ShardError(f"{source}: the {what} is empty (0 bytes); {FALLBACK}", reason="empty")
    window_log = max(_MIN_WINDOW_LOG, math.ceil(math.log2(max(limit_bytes, 1))))
    decompressor = zstandard.ZstdDecompressor(max_window_size=1 << window_log)
    view = memoryview(data)
    out = bytearray()
    position = 0
    pending: bytes | memoryview = b""
    try:
        while True:
            frame = decompressor.decompressobj()
            while not frame.eof:
                if not pending:
                    if position >= len(view):
                        raise ShardError(
                            f"{source}: the {what} ends inside a zstd frame (truncated); "
                            f"{FALLBACK}",
                            reason="corrupt",
                        )
                    pending = view[position : position + _FEED_BYTES]
                    position += len(pending)
                out += frame.decompress(pending)
                pending = b""
                if len(out) > limit_bytes:
                    raise ShardError(
                        f"{source}: the {what} decompresses to more than {limit_bytes:,} bytes; "
                        f"{FALLBACK}",
                        reason="too_large",
                    )
            pending = frame.unused_data
            if not pending and position >= len(view):
                return bytes(out)
    except zstandard.ZstdError as exc:
        raise ShardError(
            f"{source}: the {what} is not valid zstd data ({exc}); {FALLBACK}", reason="corrupt"
        ) from None


def unpack(payload: bytes, *, source: str, what: str) -> Any:
    """msgpack -> Python values; a map with a non-string or repeated key becomes `Unfit`
    (JSON holds neither), so the caller can refuse just the record that holds it."""
    try:
        return msgpack.unpackb(
            payload, raw=False, strict_map_key=False, object_pairs_hook=_map, use_list=True
        )
    except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
        raise ShardError(f"{source}: the {what} is not valid msgpack ({exc}); {FALLBACK}") from None


def _map(pairs: list[tuple[Any, Any]]) -> dict[str, Any] | Unfit:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if not isinstance(key, str):
            return Unfit(f"a map with the non-string key {printable(repr(key))}")
        if key in result:
            return Unfit(f"a map with the key {printable(key)!r} twice")
        result[key] = value
    return result


def parse_shard_index(
    data: bytes,
    *,
    source: str,
    max_bytes: int = MAX_INDEX_BYTES,
    max_names: int = MAX_INDEX_NAMES,
) -> ShardIndex:
    """A fetched `repodata_shards.msgpack.zst`, checked; ShardError names `source` (a redacted
    URL or a path) and what is wrong."""
    document = unpack(
        decompress_bounded(data, max_bytes, source=source, what="shard index"),
        source=source,
        what="shard index",
    )

    def malformed(detail: str) -> ShardError:
        return ShardError(f"{source}: the shard index is malformed ({detail}); {FALLBACK}")

    if not isinstance(document, dict):
        raise malformed(_why_not_map(document, "the document"))
    # conda-index wrote `repodata_version` instead in early drafts; a version we do not know
    # may mean something else, so only 1 (or none) is read
    version = document.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise malformed(f"version {printable(repr(version))} is not 1")
    info = document.get("info")
    if not isinstance(info, dict):
        raise malformed(_why_not_map(info, "'info'"))
    subdir = info.get("subdir")
    if not isinstance(subdir, str) or not subdir:
        raise malformed("info.subdir is not a non-empty string")
    for key in ("base_url", "shards_base_url"):  # CEP-16 and rattler require both
        value = info.get(key)
        if not isinstance(value, str) or _CONTROL.search(value):
            raise malformed(f"info.{key} is missing or not a URL string")
    return ShardIndex(
        subdir=subdir,
        base_url=info["base_url"],
        shards_base_url=info["shards_base_url"],
        created_at=_created_at(info.get("created_at"), malformed),
        shards=_names(document.get("shards"), max_names, malformed),
    )


def _names(shards: Any, max_names: int, malformed: Callable[[str], ShardError]) -> dict[str, str]:
    if not isinstance(shards, dict):
        raise malformed(_why_not_map(shards, "'shards'"))
    if len(shards) > max_names:
        raise malformed(f"it names {len(shards):,} packages, more than {max_names:,}")
    names: dict[str, str] = {}
    for name, digest in shards.items():
        hex_digest = digest_hex(digest)
        if not name or hex_digest is None or len(hex_digest) != 64:
            raise malformed(f"the shard of {printable(name)!r} is not named by 32 sha256 bytes")
        names[name] = hex_digest
    return names


def _why_not_map(value: Any, what: str) -> str:
    return f"{what} is {value.reason}" if isinstance(value, Unfit) else f"{what} is not a map"


def _created_at(value: Any, malformed: Callable[[str], ShardError]) -> str | None:
    """Informational only, but rattler refuses an index whose created_at is not a time."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, msgpack.Timestamp):
        moment: datetime = value.to_datetime()
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise malformed("info.created_at is not a time") from None


def digest_hex(value: Any) -> str | None:
    """A msgpack bin digest as lowercase hex; None for anything else (the length is the
    caller's to check). conda and rattler also take an array of byte values, which no known
    writer produces; reading it would turn a JSON list into a string, so it is not read."""
    return value.hex() if isinstance(value, bytes) else None


def shard_url(index_url: str, shards_base_url: str, sha256_hex: str) -> str:
    """Where the shard named `sha256_hex` lives: `<shards_base_url><sha256>.msgpack.zst`,
    with `shards_base_url` resolved against the index's URL as conda and rattler do."""
    if not _HEX64.fullmatch(sha256_hex):
        raise ShardError(f"{sha256_hex!r} is not a lowercase hex sha256; no shard has that name")
    return directory_url(index_url, shards_base_url) + f"{sha256_hex}.msgpack.zst"


def directory_url(index_url: str, reference: str) -> str:
    """`reference` (relative, absolute path or absolute URL, possibly another host; empty for
    the index's own folder) joined with the index URL, always ending in '/'.

    A reference without a trailing slash names a folder, not a file: rattler adds the slash,
    and conda does for shards_base_url. Scheme changes from http(s) to anything but http(s)
    are refused, so an upstream cannot point us at local files.
    """
    if reference and not reference.endswith("/"):
        reference += "/"
    try:
        resolved = urljoin(urljoin(index_url, reference), ".")
        index_scheme = urlsplit(index_url).scheme.lower()
        scheme = urlsplit(resolved).scheme.lower()
    except ValueError as exc:  # an upstream's base URL urllib cannot parse
        raise ShardError(
            f"{redact_url(index_url)}: its shard index names a base URL that is not a URL "
            f"({exc}); {FALLBACK}",
            reason="malformed",
        ) from None
    allowed = _HTTP if index_scheme in _HTTP else _HTTP | {"file"}
    if index_scheme not in allowed or scheme not in allowed:
        raise ShardError(
            f"{redact_url(index_url)}: its shard index points at {redact_url(resolved)!r}; only "
            f"http(s) (or file:// from a file:// upstream) is followed; {FALLBACK}"
        )
    return resolved if resolved.endswith("/") else resolved + "/"


def printable(text: str, limit: int = 200) -> str:
    """Text from upstream as it may appear in a message: escaped, and cut when long."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."
