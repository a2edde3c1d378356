"""A channel tree kept in an S3 bucket (moto on 127.0.0.1): every command works on it, the
objects are the local tree byte for byte with the headers nginx would send, and a real client
installs from the bucket over plain http."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import zstandard

from mirror.core.object_headers import is_served
from mirror.core.shards import read_shard
from tests.conftest import run_cli, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.rattler_client import solve_and_install
from tests.support.s3_server import S3Bucket

PREFIX = "channels"
PACKAGES = [
    PackageSpec("alpha", "1.0", subdir="linux-64", depends=("beta >=2",)),
    PackageSpec("beta", "2.0"),
    PackageSpec("beta", "2.1", fmt=".tar.bz2"),
]


def bucket_config(base: Path, s3: S3Bucket, channels: dict[str, Any], **top: Any) -> Path:
    storage = {"endpoint_url": s3.url, "region": "us-east-1", "addressing": "path"}
    return write_config(base, channels, root=f"s3://{s3.name}/{PREFIX}", storage=storage, **top)


def objects(s3: S3Bucket) -> dict[str, bytes]:
    bucket = s3.bucket(PREFIX)
    return {key: bucket.get_bytes(key) for key in bucket.walk("")}


def without_index_times(data: bytes) -> bytes:
    return re.sub(rb'"indexed_timestamp": ?[0-9]+', b"", data)


def same_tree(one: dict[str, bytes], other: dict[str, bytes]) -> bool:
    """Equal keys and bytes, shards compared by the records they decode to."""

    def normal(files: dict[str, bytes]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, data in files.items():
            if "/shards/" in key:
                found.setdefault(key.rsplit("/", 2)[0] + "/shards", []).append(
                    without_index_times(json.dumps(read_shard(data), sort_keys=True).encode())
                )
            elif key.endswith(".zst") and "shards" in key:
                continue  # names the shards by their hashes, compared above
            elif key.endswith(".zst"):
                found[key] = without_index_times(zstandard.decompress(data))
            else:
                found[key] = without_index_times(data)
        return {k: sorted(v) if isinstance(v, list) else v for k, v in found.items()}

    return normal(one) == normal(other)


def local_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_a_sync_into_a_bucket_is_the_local_tree_byte_for_byte_and_installs_over_http(
    tmp_path: Path, s3: S3Bucket
) -> None:
    build_channel(tmp_path / "up", PACKAGES)
    channel = {"up": {"upstream": str(tmp_path / "up"), "subdirs": ["linux-64", "noarch"]}}
    (tmp_path / "local").mkdir()
    (tmp_path / "remote").mkdir()
    local = write_config(tmp_path / "local", channel)
    remote = bucket_config(tmp_path / "remote", s3, channel)
    for config in (local, remote):
        result = run_cli(["sync", "--config", str(config)])
        assert result.code == 0, result.stderr
    in_bucket = {k: v for k, v in objects(s3).items() if is_served(k)}
    on_disk = local_files(tmp_path / "local" / "tree")
    # the two syncs ran a moment apart: only the time each record entered the index differs
    assert same_tree(in_bucket, on_disk)
    s3.make_public(PREFIX)
    status, body, headers = s3.http_get(f"{PREFIX}/up/noarch/repodata.json")
    assert status == 200 and body == in_bucket["up/noarch/repodata.json"]
    assert headers["cache-control"] == "public, max-age=60, must-revalidate"
    assert headers["content-type"] == "application/json"
    installed = solve_and_install(
        [f"{s3.http_base(PREFIX)}/up"], ["alpha"], ["linux-64", "noarch"],
        tmp_path / "env", tmp_path / "cache",
    )  # fmt: skip
    assert installed == {"alpha", "beta"}
