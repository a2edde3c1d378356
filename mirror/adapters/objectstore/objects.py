"""What the bucket says about its objects: sizes, ETags, times, stored headers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# user metadata (x-amz-meta-sha256) put_file stores beside a package, so that verify and a
# resumed run can trust an object without downloading it
SHA256_METADATA = "sha256"
_PLAIN_MD5 = re.compile(r'"?([0-9a-f]{32})"?')


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """One object. `etag` is the server's token for this version of the bytes (quotes
    included, as S3 sends it): pass it back as `if_match` to replace exactly this version.
    The headers and `sha256` are known from head() and get_object() only (a listing does
    not carry them)."""

    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None
    cache_control: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """One level below a prefix: objects by name, and the names of the 'folders' there."""

    objects: dict[str, ObjectStat] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)


def stat_from_meta(
    meta: Mapping[str, Any], attributes: Mapping[str, Any] | None = None
) -> ObjectStat:
    attributes = attributes or {}
    return ObjectStat(
        size=int(meta["size"]),
        etag=str(meta.get("e_tag") or ""),
        last_modified=meta["last_modified"],
        content_type=attributes.get("Content-Type"),
        cache_control=attributes.get("Cache-Control"),
        sha256=attributes.get(SHA256_METADATA),
    )


def relative_to(prefix: str, path: str) -> str:
    """obstore's path (relative to the bucket prefix) relative to a listed prefix."""
    return path[len(prefix) + 1 :] if prefix else path


def etag_names(etag: str, data: bytes) -> bool:
    """True if `etag` is provably that of `data`: S3 (and MinIO, Ceph) give an object written
    in one PUT, without SSE-KMS or SSE-C, the MD5 of its bytes as ETag. Any other ETag (a
    multipart upload's 'md5-N', an encrypted object's) proves nothing: False."""
    match = _PLAIN_MD5.fullmatch(etag)
    return (
        match is not None and match.group(1) == hashlib.md5(data, usedforsecurity=False).hexdigest()
    )
