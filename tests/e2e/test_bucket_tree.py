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
from tests.support.builder import PackageSpec, build_channel, build_package
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


def upload_channel(s3: S3Bucket, folder: Path, channel: str) -> None:
    """Package files put into the bucket by someone else (a CI job), as a local channel."""
    bucket = s3.bucket(PREFIX)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.endswith((".conda", ".tar.bz2")):
            bucket.put_file(f"{channel}/{path.parent.name}/{path.name}", path)


def test_mirror_index_of_a_channel_in_a_bucket_matches_the_local_index(
    tmp_path: Path, s3: S3Bucket
) -> None:
    for spec in PACKAGES:
        build_package(spec, tmp_path / "local" / "chan" / spec.subdir)
    upload_channel(s3, tmp_path / "local" / "chan", "chan")
    url = f"s3://{s3.name}/{PREFIX}/chan"
    env = {"AWS_ENDPOINT_URL": s3.url}
    first = run_cli(["index", url, "--state-dir", str(tmp_path / "state")], env=env)
    assert first.code == 0, first.stderr
    assert run_cli(["index", str(tmp_path / "local" / "chan")]).code == 0
    in_bucket = {k[len("chan/") :]: v for k, v in objects(s3).items() if is_served(k)}
    assert same_tree(in_bucket, local_files(tmp_path / "local" / "chan"))

    build_package(PackageSpec("gamma", "1.0"), tmp_path / "more" / "noarch")
    upload_channel(s3, tmp_path / "more", "chan")
    again = run_cli(["index", url, "--state-dir", str(tmp_path / "state")], env=env)
    assert again.code == 0, again.stderr
    names = json.loads(s3.bucket(PREFIX).get_bytes("chan/noarch/repodata.json"))
    assert "gamma-1.0-0.conda" in names["packages.conda"]


def test_a_resync_with_nothing_new_writes_nothing_to_the_bucket(
    tmp_path: Path, s3: S3Bucket
) -> None:
    build_channel(tmp_path / "up", PACKAGES)
    channel = {"up": {"upstream": str(tmp_path / "up"), "subdirs": ["linux-64", "noarch"]}}
    config = bucket_config(tmp_path, s3, channel)
    assert run_cli(["sync", "--config", str(config)]).code == 0
    s3.gateway.clear()
    again = run_cli(["sync", "--config", str(config)])
    assert again.code == 0, again.stderr
    writes = [r for r in s3.gateway.requests if r.method in ("PUT", "POST", "DELETE")]
    # the lease is taken and given back; nothing of the tree is written
    assert {r.path.rsplit("/", 1)[-1] for r in writes} <= {".mirror-lease.json"}, writes
    verify = run_cli(["verify", "--full", "--config", str(config)])
    assert verify.code == 0, verify.stdout + verify.stderr
