"""A mirror site whose tree lives in a test bucket: its config, and what a client can see in it.

config = bucket_config(tmp_path, s3, {"local": {...}}, storage={"lease_ttl_s": 6})
assert index_problems(s3.bucket(PREFIX)) == []    # every index names objects that exist
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
import zstandard

from mirror.adapters.objectstore import Bucket
from mirror.core.shards import SHARD_INDEX_NAME, read_shard, read_shard_index
from tests.support.s3_server import S3Bucket

PREFIX = "channels"
INDEX_NAMES = ("repodata.json", "repodata.json.zst")


def bucket_config(
    base: Path,
    s3: S3Bucket,
    channels: dict[str, Any],
    *,
    storage: dict[str, Any] | None = None,
    state_dir: str = "state",
    name: str = "mirror.yaml",
    prefix: str = PREFIX,
    **top: Any,
) -> Path:
    """A config whose root is `s3://<bucket>/<prefix>`, reached through the test's gateway."""
    document = {
        "root": f"s3://{s3.name}/{prefix}",
        "storage": {"endpoint_url": s3.url, "region": "us-east-1", "addressing": "path",
                    **(storage or {})},
        "state_dir": state_dir,
        "retry_backoff_s": 0.01,
        **top,
        "channels": channels,
    }  # fmt: skip
    base.mkdir(parents=True, exist_ok=True)
    path = base / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def published(bucket: Bucket, channel: str, subdir: str) -> set[str]:
    """The file names a subdir's repodata.json lists (empty when there is none)."""
    found = bucket.walk(f"{channel}/{subdir}")
    if "repodata.json" not in found:
        return set()
    document = json.loads(bucket.get_bytes(f"{channel}/{subdir}/repodata.json"))
    return set(document.get("packages", {})) | set(document.get("packages.conda", {}))


def index_problems(bucket: Bucket) -> list[str]:
    """What a client reading the bucket could trip over: a record in repodata.json, its .zst
    or a shard naming a package object that is not there (or not of the recorded size), or
    a shard index naming a shard that is missing or not the bytes its name hashes."""
    objects = {key: stat.size for key, stat in bucket.walk("").items()}
    subdirs = sorted({key.rsplit("/", 1)[0] for key in objects if key.endswith(INDEX_NAMES)})
    problems: list[str] = []
    for folder in subdirs:
        for name in INDEX_NAMES:
            if f"{folder}/{name}" in objects:
                document = json.loads(_plain(bucket.get_bytes(f"{folder}/{name}")))
                records = {**document.get("packages", {}), **document.get("packages.conda", {})}
                problems += _missing(objects, folder, records, f"{folder}/{name}")
        if f"{folder}/{SHARD_INDEX_NAME}" in objects:
            problems += _shard_problems(bucket, objects, folder)
    return problems


def _shard_problems(bucket: Bucket, objects: dict[str, int], folder: str) -> list[str]:
    problems = []
    shard_map = read_shard_index(bucket.get_bytes(f"{folder}/{SHARD_INDEX_NAME}"))
    for package, digest in sorted(shard_map.items()):
        key = f"{folder}/shards/{digest}.msgpack.zst"
        if key not in objects:
            problems.append(f"{folder}/{SHARD_INDEX_NAME} names missing shard {key} ({package})")
            continue
        data = bucket.get_bytes(key)
        if hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"{key} does not hash to its name")
            continue
        problems += _missing(objects, folder, read_shard(data), key)
    return problems


def _missing(
    objects: dict[str, int], folder: str, records: dict[str, Any], where: str
) -> list[str]:
    problems = []
    for filename, record in sorted(records.items()):
        size = objects.get(f"{folder}/{filename}")
        if size is None:
            problems.append(f"{where} names missing {folder}/{filename}")
        elif size != record.get("size"):
            problems.append(f"{where}: {folder}/{filename} is {size} bytes, not {record['size']}")
    return problems


def _plain(data: bytes) -> bytes:
    if data[:4] == b"\x28\xb5\x2f\xfd":  # a zstd frame
        return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    return data
