"""Give a test upstream channel CEP-16 shards, written by our own writer, beside its repodata.

`shard_channel(root)` writes `<subdir>/repodata_shards.msgpack.zst` and the shards it names for
every subdir that has a repodata.json, so an UpstreamServer serving `root` offers shards. The
shards may live elsewhere: under another folder of the served tree (`shards_root`), named in the
index by a relative path, an absolute path or an absolute URL (`shards_base_url`, where
`{subdir}` is replaced).

tests.support.builder writes repodata.json pretty-printed (indent 2), so its records are not
canonical JSON, and a record read through repodata.json would differ in whitespace from the same
record read through a shard. Unless told otherwise, repodata.json (and its .zst) are rewritten
first with canonical records (sorted keys, compact), so both paths can be compared byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from mirror.core.records import name_from_filename, parse_repodata
from mirror.core.shards import (
    SHARD_INDEX_NAME,
    SHARDS_BASE_URL,
    SHARDS_DIR,
    build_shard,
    build_shard_index,
    removed_by_name,
)

__all__ = [
    "CREATED_AT",
    "ShardedSubdir",
    "canonical_record",
    "canonicalize_repodata",
    "shard_channel",
    "shard_subdir",
]

CREATED_AT = (
    "2023-11-14T22:13:20Z"  # builder.FIXED_MTIME: the index bytes never depend on the clock
)
_ENCODER = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True)
class ShardedSubdir:
    """What was written for one subdir."""

    subdir: str
    index_path: Path
    shards_dir: Path
    shards: dict[str, str]  # package name -> sha256 hex of its shard file
    written: int  # shard files new on disk (an unchanged shard is never rewritten)

    def shard_path(self, name: str) -> Path:
        return self.shards_dir / f"{self.shards[name]}.msgpack.zst"


def canonical_record(record: Mapping[str, Any]) -> bytes:
    """A record as canonical JSON: every map's keys sorted, no whitespace."""
    return _ENCODER.encode(record)


def canonicalize_repodata(subdir_dir: Path) -> bytes:
    """Rewrite repodata.json (and repodata.json.zst when there is one) as one canonical JSON
    document, so that every record in it is canonical. Returns the new bytes."""
    path = subdir_dir / "repodata.json"
    data = _ENCODER.encode(msgspec.json.decode(path.read_bytes())) + b"\n"
    zst = subdir_dir / "repodata.json.zst"
    if zst.exists():
        compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
        _replace(zst, compressor.compress(data))
    _replace(path, data)
    return data


def shard_subdir(
    subdir_dir: Path,
    *,
    shards_dir: Path | None = None,
    shards_base_url: str = SHARDS_BASE_URL,
    base_url: str = "",
    created_at: str = CREATED_AT,
    canonicalize: bool = True,
) -> ShardedSubdir:
    """Shard one subdir's repodata.json: shards first, then the index (as publishers do).

    The records go into the shards as repodata.json has them; with `canonicalize` the
    repodata.json is first rewritten canonical. A name whose only entries are in `removed`
    gets no shard, as our own publisher does.
    """
    data = canonicalize_repodata(subdir_dir) if canonicalize else None
    repodata = parse_repodata(data or (subdir_dir / "repodata.json").read_bytes(), source="test")
    by_name: dict[str, list[tuple[str, bytes]]] = {}
    for filename, (_, raw) in repodata.entries.items():
        name = name_from_filename(filename)
        if name is None:
            raise ValueError(f"{subdir_dir}: {filename!r} names no package")
        by_name.setdefault(name, []).append((filename, bytes(raw)))
    removed = removed_by_name(msgspec.json.decode(repodata.top_level.get("removed", b"[]")))
    folder = shards_dir if shards_dir is not None else subdir_dir / SHARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shards: dict[str, str] = {}
    written = 0
    for name, records in sorted(by_name.items()):
        shard = build_shard(name, records, removed.get(name, ()))
        shards[name] = shard.sha256
        target = folder / shard.filename
        if not target.exists():  # shards are immutable: never rewrite one
            _replace(target, shard.data)
            written += 1
    subdir = _subdir_of(repodata.top_level.get("info"), subdir_dir)
    index = build_shard_index(
        subdir, shards, created_at, base_url=base_url, shards_base_url=shards_base_url
    )
    _replace(subdir_dir / SHARD_INDEX_NAME, index)
    return ShardedSubdir(subdir, subdir_dir / SHARD_INDEX_NAME, folder, shards, written)


def shard_channel(
    root: Path,
    *,
    shards_root: Path | None = None,
    shards_base_url: str = SHARDS_BASE_URL,
    base_url: str = "",
    created_at: str = CREATED_AT,
    canonicalize: bool = True,
) -> dict[str, ShardedSubdir]:
    """Shard every `<root>/<subdir>/repodata.json`. With `shards_root`, the shards of each
    subdir go to `<shards_root>/<subdir>/`; `{subdir}` in `shards_base_url` and `base_url` is
    replaced by the subdir's name, e.g. "../../cdn/{subdir}/" or "http://host:port/x/{subdir}"."""
    done: dict[str, ShardedSubdir] = {}
    for repodata in sorted(root.glob("*/repodata.json")):
        subdir = repodata.parent.name
        done[subdir] = shard_subdir(
            repodata.parent,
            shards_dir=None if shards_root is None else shards_root / subdir,
            shards_base_url=shards_base_url.replace("{subdir}", subdir),
            base_url=base_url.replace("{subdir}", subdir),
            created_at=created_at,
            canonicalize=canonicalize,
        )
    return done


def _subdir_of(raw_info: Any, subdir_dir: Path) -> str:
    info = msgspec.json.decode(raw_info) if raw_info is not None else {}
    subdir = info.get("subdir") if isinstance(info, dict) else None
    return subdir if isinstance(subdir, str) and subdir else subdir_dir.name


def _replace(path: Path, data: bytes) -> None:
    """Write by rename, so a server answering meanwhile never sends half a file."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
