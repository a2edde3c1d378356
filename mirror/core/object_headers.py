"""The Content-Type and Cache-Control every key of a channel tree is served with.

`config/nginx.conf` gives the same answers to a browser or conda client reading a local tree;
an object store has no server config, so each object carries its headers from the upload on.
Both must agree (a test parses the nginx config and compares): repodata and the shard index
are short-lived and revalidated, channeldata a little longer, CEP-16 shards are immutable
(named by their hash), package files are cached for a day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INDEX_CACHE_CONTROL = "public, max-age=60, must-revalidate"
CHANNELDATA_CACHE_CONTROL = "public, max-age=300, must-revalidate"
SHARD_CACHE_CONTROL = "public, max-age=31536000, immutable"
PACKAGE_CACHE_CONTROL = "public, max-age=86400"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# nginx looks at what follows the last dot of the name, lower-cased
_CONTENT_TYPES = {
    "json": "application/json",
    "zst": "application/zstd",
    "bz2": "application/x-bzip2",
    "conda": "application/octet-stream",
}
_SHARD = re.compile(r"[^/]+/[^/]+/shards/[0-9a-f]{64}\.msgpack\.zst")
_INDEX_NAMES = frozenset(
    {
        "repodata.json",
        "repodata.json.zst",
        "repodata.json.bz2",
        "current_repodata.json",
        "current_repodata.json.zst",
        "run_exports.json",
        "repodata_shards.msgpack.zst",
    }
)


@dataclass(frozen=True, slots=True)
class ObjectHeaders:
    """What a client receives with an object; no Cache-Control means none is sent."""

    content_type: str
    cache_control: str | None


def is_served(key: str) -> bool:
    """False for keys a client must never fetch: anything with a dotfile component (temp
    files, the writer lease, a state directory someone put inside the tree)."""
    return not any(part.startswith(".") for part in key.split("/"))


def headers_for(key: str) -> ObjectHeaders:
    """The headers for `key`, a '/'-separated path relative to the tree's root
    (`<channel>/<subdir>/<file>`), as the nginx config would send them."""
    return ObjectHeaders(_content_type(key), _cache_control(key))


def _content_type(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if "." not in name:
        return DEFAULT_CONTENT_TYPE
    return _CONTENT_TYPES.get(name.rsplit(".", 1)[1].lower(), DEFAULT_CONTENT_TYPE)


def _cache_control(key: str) -> str | None:
    # nginx tries regex locations in the order of the config and takes the first match
    if _SHARD.fullmatch(key):
        return SHARD_CACHE_CONTROL
    name = key.rsplit("/", 1)[-1]
    if name in _INDEX_NAMES:
        return INDEX_CACHE_CONTROL
    if name == "channeldata.json":
        return CHANNELDATA_CACHE_CONTROL
    if key.endswith((".conda", ".tar.bz2")):
        return PACKAGE_CACHE_CONTROL
    return None
