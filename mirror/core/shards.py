"""CEP-16 sharded repodata: one shard per package name, and the shard index, as exact bytes.

A shard's file name is the sha256 of its compressed bytes, so the bytes must be deterministic:
keys sorted, a fixed zstd level, no timestamps inside. md5 and sha256 become raw bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import zstandard

from mirror.core.records import expected_group, name_from_filename

SHARD_INDEX_NAME = "repodata_shards.msgpack.zst"
SHARDS_DIR = "shards"
SHARDS_BASE_URL = "./shards/"
# Shards and the index are mostly sha256 digests, which do not compress: level 19 makes them
# ~4% smaller than level 9 and costs ~12x the time (1.1 ms vs 0.08 ms for a 20-record shard),
# which matters when a subdir of 25,000 names is sharded for the first time.
SHARD_ZST_LEVEL = 9
INDEX_ZST_LEVEL = 9
_ENCODER = msgspec.msgpack.Encoder(order="sorted")


@dataclass(frozen=True)
class Shard:
    name: str  # package name
    sha256: str  # hex digest of `data`: the shard's file name is f"{sha256}.msgpack.zst"
    data: bytes  # compressed shard file

    @property
    def filename(self) -> str:
        return f"{self.sha256}.msgpack.zst"


def build_shard(
    name: str, records: Iterable[tuple[str, bytes]], removed: Iterable[str] = ()
) -> Shard:
    """The shard of one package name from its (file name, record JSON) pairs."""
    document: dict[str, Any] = {"packages": {}, "packages.conda": {}, "removed": sorted(removed)}
    for filename, raw in records:
        document[expected_group(filename)][filename] = _packed_record(raw)
    payload = _ENCODER.encode(document)
    data = zstandard.ZstdCompressor(level=SHARD_ZST_LEVEL, write_content_size=True).compress(
        payload
    )
    return Shard(name=name, sha256=hashlib.sha256(data).hexdigest(), data=data)


def _packed_record(raw: bytes) -> dict[str, Any]:
    record = msgspec.json.decode(raw)
    for key in ("md5", "sha256"):
        value = record.get(key)
        if isinstance(value, str):
            # a malformed digest stays the string upstream gave; clients may ignore the record
            with contextlib.suppress(ValueError):
                record[key] = bytes.fromhex(value)
    return dict(record)


def build_shard_index(
    subdir: str,
    shards: Mapping[str, str],
    created_at: str,
    *,
    base_url: str = "",
    shards_base_url: str = SHARDS_BASE_URL,
) -> bytes:
    """The shard index: package name -> 32 raw bytes of its shard's sha256.

    `created_at` is the only field that changes without the content changing, so callers
    compare `shards` with the published index before deciding to write a new one. Our own
    trees keep the defaults; tests build upstreams whose shards or packages live elsewhere.
    """
    document = {
        "version": 1,
        "info": {
            "subdir": subdir,
            "base_url": base_url,
            "shards_base_url": shards_base_url,
            "created_at": created_at,
        },
        "shards": {name: bytes.fromhex(digest) for name, digest in shards.items()},
    }
    payload = _ENCODER.encode(document)
    return zstandard.ZstdCompressor(
        level=INDEX_ZST_LEVEL, write_content_size=True, write_checksum=True
    ).compress(payload)


def read_shard_index(data: bytes) -> dict[str, str]:
    """The name -> hex sha256 map of a published shard index (empty if unreadable)."""
    try:
        payload = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
        document = msgspec.msgpack.decode(payload)
        shards = document["shards"]
        return {str(name): bytes(digest).hex() for name, digest in shards.items()}
    except (zstandard.ZstdError, msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return {}


def read_shard(data: bytes) -> dict[str, dict[str, Any]]:
    """A shard's records by file name, md5/sha256 back in hex as in repodata.json.
    Raises ValueError when the bytes are not a shard."""
    try:
        payload = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
        document = msgspec.msgpack.decode(payload)
    except (zstandard.ZstdError, msgspec.DecodeError) as exc:
        raise ValueError(f"not a zstd-compressed msgpack shard ({exc})") from exc
    if not isinstance(document, dict):
        raise ValueError("a shard must be a map")
    records: dict[str, dict[str, Any]] = {}
    for group in ("packages", "packages.conda"):
        for filename, record in (document.get(group) or {}).items():
            record = dict(record)
            for key in ("md5", "sha256"):
                if isinstance(record.get(key), bytes):
                    record[key] = record[key].hex()
            records[str(filename)] = record
    return records


def removed_by_name(removed: Iterable[str]) -> dict[str, list[str]]:
    """Group a repodata `removed` list by the package name each file name implies."""
    grouped: dict[str, list[str]] = {}
    for filename in removed:
        name = name_from_filename(filename)
        if name is not None:
            grouped.setdefault(name, []).append(filename)
    return grouped
