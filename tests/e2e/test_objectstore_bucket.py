"""A Bucket against a real S3 server (moto behind a gateway that checks checksums like AWS)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mirror.adapters.objectstore import Bucket
from mirror.core.object_headers import ObjectHeaders, headers_for
from mirror.errors import StoreConflictError, StoreError, StoreMissingError
from tests.support.builder import PackageSpec, package_bytes
from tests.support.s3_server import S3Bucket

MIB = 1024 * 1024
SHARD = hashlib.sha256(b"shard").hexdigest()


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_bytes_round_trip_and_every_put_carries_the_sha256_of_its_body(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    payloads = {f"c/noarch/f{i}.json": os.urandom(1000 + i) for i in range(5)}
    for key, data in payloads.items():
        bucket.put_bytes(key, data)
    assert {key: bucket.get_bytes(key) for key in payloads} == payloads
    puts = s3.gateway.requests_of("PUT")
    assert len(puts) == len(payloads)
    sent = {r.headers["x-amz-checksum-sha256"] for r in puts}
    assert sent == {b64_sha256(data) for data in payloads.values()}


def test_the_server_refuses_a_body_that_does_not_match_its_checksum(s3: S3Bucket) -> None:
    """Corrupted on every try: refused every time (400 BadDigest), nothing stored."""
    bucket = s3.bucket("channels")
    s3.gateway.corrupt_next_uploads(100)
    with pytest.raises(StoreError) as caught:
        bucket.put_bytes("c/noarch/repodata.json", b'{"packages": {}}' * 100)
    assert "damaged" in str(caught.value)
    assert "s3://" in str(caught.value) and "c/noarch/repodata.json" in str(caught.value)
    assert {r.status for r in s3.gateway.requests_of("PUT")} == {400}
    s3.gateway.heal()
    assert bucket.head("c/noarch/repodata.json") is None


def test_an_upload_damaged_once_in_transit_is_sent_again_and_arrives_intact(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    data = os.urandom(4096)
    s3.gateway.corrupt_next_uploads(1)
    bucket.put_bytes("c/noarch/x-1-0.conda", data)
    assert [r.status for r in s3.gateway.requests_of("PUT")] == [400, 200]
    assert bucket.get_bytes("c/noarch/x-1-0.conda") == data


def test_create_only_refuses_an_existing_object_and_keeps_its_bytes(s3: S3Bucket) -> None:
    bucket = s3.bucket()
    bucket.put_bytes("c/linux-64/a-1-0.conda", b"first", create_only=True)
    with pytest.raises(StoreConflictError) as caught:
        bucket.put_bytes("c/linux-64/a-1-0.conda", b"second", create_only=True)
    assert "already exists" in str(caught.value)
    assert bucket.get_bytes("c/linux-64/a-1-0.conda") == b"first"
    assert s3.gateway.requests_of("PUT")[-1].headers["if-none-match"] == "*"


def test_replace_succeeds_only_on_the_version_last_seen(s3: S3Bucket) -> None:
    bucket = s3.bucket()
    first = bucket.put_bytes("c/linux-64/repodata.json", b"v1")
    second = bucket.put_bytes("c/linux-64/repodata.json", b"v2", if_match=first)
    assert second != first
    with pytest.raises(StoreConflictError) as caught:  # a writer still holding v1's etag
        bucket.put_bytes("c/linux-64/repodata.json", b"stale", if_match=first)
    assert "changed since" in str(caught.value)
    data, stat = bucket.get_object("c/linux-64/repodata.json")
    assert (data, stat.etag) == (b"v2", second)


def test_objects_carry_the_headers_of_their_kind(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    keys = [
        "c/linux-64/repodata.json",
        "c/linux-64/repodata.json.zst",
        "c/linux-64/repodata_shards.msgpack.zst",
        f"c/linux-64/shards/{SHARD}.msgpack.zst",
        "c/linux-64/zlib-1.3.1-h0_0.conda",
        "c/noarch/appdata-2024.1-0.tar.bz2",
        "c/channeldata.json",
    ]
    for key in keys:
        bucket.put_bytes(key, b"x")
    for key in keys:
        stat = bucket.head(key)
        assert stat is not None
        expected = headers_for(key)
        assert (stat.content_type, stat.cache_control) == (
            expected.content_type,
            expected.cache_control,
        ), key


def test_explicit_headers_and_sha256_metadata_are_stored(s3: S3Bucket, tmp_path: Path) -> None:
    bucket = s3.bucket()
    path = tmp_path / "f"
    path.write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    bucket.put_file(
        "k/notes.txt", path, headers=ObjectHeaders("text/plain", "no-store"), sha256_hex=digest
    )
    stat = bucket.head("k/notes.txt")
    assert stat is not None
    assert (stat.content_type, stat.cache_control, stat.sha256) == (
        "text/plain",
        "no-store",
        digest,
    )


def test_a_large_file_goes_up_in_checksummed_parts_byte_for_byte(
    s3: S3Bucket, tmp_path: Path
) -> None:
    bucket = s3.bucket("channels", multipart_threshold_bytes=5 * MIB, part_size_bytes=5 * MIB)
    data = os.urandom(11 * MIB + 123)
    path = tmp_path / "big.conda"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    etag = bucket.put_file("c/linux-64/big-1.0-0.conda", path, sha256_hex=digest)
    assert etag.strip('"').endswith("-3")  # S3's ETag of a 3-part upload
    parts = [r for r in s3.gateway.requests_of("PUT") if "partNumber=" in r.path]
    assert len(parts) == 3
    assert all(r.headers.get("x-amz-checksum-sha256") for r in parts)
    assert hashlib.sha256(bucket.get_bytes("c/linux-64/big-1.0-0.conda")).hexdigest() == digest
    stat = bucket.head("c/linux-64/big-1.0-0.conda")
    assert stat is not None
    assert (stat.size, stat.sha256, stat.cache_control) == (
        len(data),
        digest,
        "public, max-age=86400",
    )


def test_a_damaged_part_is_sent_again(s3: S3Bucket, tmp_path: Path) -> None:
    bucket = s3.bucket(multipart_threshold_bytes=5 * MIB, part_size_bytes=5 * MIB)
    data = os.urandom(6 * MIB)
    path = tmp_path / "big"
    path.write_bytes(data)
    s3.gateway.corrupt_next_uploads(1)
    bucket.put_file("c/noarch/big-1-0.tar.bz2", path)
    assert 400 in {r.status for r in s3.gateway.requests_of("PUT")}
    assert bucket.get_bytes("c/noarch/big-1-0.tar.bz2") == data


def test_create_only_on_a_multipart_upload_refuses_an_existing_object(
    s3: S3Bucket, tmp_path: Path
) -> None:
    bucket = s3.bucket(multipart_threshold_bytes=5 * MIB, part_size_bytes=5 * MIB)
    path = tmp_path / "big"
    path.write_bytes(os.urandom(6 * MIB))
    bucket.put_bytes("c/noarch/big-1-0.conda", b"already here")
    with pytest.raises(StoreConflictError):
        bucket.put_file("c/noarch/big-1-0.conda", path, create_only=True)
    assert bucket.get_bytes("c/noarch/big-1-0.conda") == b"already here"


def test_ranges_suffixes_and_streams_read_the_right_bytes(s3: S3Bucket) -> None:
    bucket = s3.bucket()
    data = bytes(range(256)) * 40
    bucket.put_bytes("c/noarch/blob.conda", data)
    assert bucket.get_range("c/noarch/blob.conda", 10, 20) == data[10:20]
    assert bucket.get_range("c/noarch/blob.conda", len(data) - 5, len(data) + 100) == data[-5:]
    assert bucket.get_suffix("c/noarch/blob.conda", 22) == data[-22:]
    assert b"".join(bucket.iter_bytes("c/noarch/blob.conda", chunk_bytes=1000)) == data
    ranged = [r for r in s3.gateway.requests_of("GET") if "range" in r.headers]
    assert [r.headers["range"] for r in ranged[:2]] == [
        "bytes=10-19",
        f"bytes={len(data) - 5}-{len(data) + 99}",
    ]


def test_a_conda_package_info_is_read_with_ranged_gets(s3: S3Bucket) -> None:
    """zipfile over open_read(): the index reads info/ without downloading the package."""
    bucket = s3.bucket()
    payload = {"lib/big.bin": os.urandom(2 * MIB)}
    data = package_bytes(PackageSpec("zlib", "1.3.1", build="h0_0", files=payload))
    bucket.put_bytes("c/linux-64/zlib-1.3.1-h0_0.conda", data)
    s3.gateway.clear()
    with zipfile.ZipFile(bucket.open_read("c/linux-64/zlib-1.3.1-h0_0.conda")) as archive:
        names = archive.namelist()
        info_member = next(n for n in names if n.startswith("info-"))
        info_bytes = archive.read(info_member)
    assert info_bytes == zipfile.ZipFile(io.BytesIO(data)).read(info_member)
    gets = s3.gateway.requests_of("GET")
    assert gets and all("range" in r.headers for r in gets)
    assert sum(r.reply_size for r in gets) < len(data) // 4  # the 2 MiB payload stayed there


def test_listing_one_level_and_recursively(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    for key in [
        "c/linux-64/a-1-0.conda",
        "c/linux-64/repodata.json",
        "c/noarch/b-1-0.conda",
        f"c/linux-64/shards/{SHARD}.msgpack.zst",
        "c/channeldata.json",
        "other/x",
    ]:
        bucket.put_bytes(key, key.encode())
    top = bucket.list_dir("c")
    assert set(top.objects) == {"channeldata.json"}
    assert top.folders == ["linux-64", "noarch"]
    subdir = bucket.list_dir("c/linux-64")
    assert set(subdir.objects) == {"a-1-0.conda", "repodata.json"}
    assert subdir.folders == ["shards"]
    assert subdir.objects["a-1-0.conda"].size == len("c/linux-64/a-1-0.conda")
    assert set(bucket.walk("c")) == {
        "linux-64/a-1-0.conda",
        "linux-64/repodata.json",
        "noarch/b-1-0.conda",
        f"linux-64/shards/{SHARD}.msgpack.zst",
        "channeldata.json",
    }
    assert {k for k in bucket.walk() if not k.startswith("c/")} == {"other/x"}
    assert bucket.list_dir("nothing-here").objects == {}


def test_walk_sees_past_one_page_of_listing(s3: S3Bucket) -> None:
    bucket = s3.bucket("t", direct=True)
    keys = {f"c/noarch/p{i:04}-1-0.conda" for i in range(1100)}  # S3 pages hold 1,000
    with ThreadPoolExecutor(8) as pool:  # one Bucket serves many threads
        list(pool.map(lambda key: bucket.put_bytes(key, b""), keys))
    assert set(bucket.walk("c/noarch")) == {k.rsplit("/", 1)[1] for k in keys}


def test_delete_removes_and_tolerates_absence(s3: S3Bucket) -> None:
    bucket = s3.bucket()
    bucket.put_bytes("a/one", b"1")
    bucket.put_bytes("a/two", b"2")
    bucket.delete("a/one")
    bucket.delete("a/one")
    assert bucket.head("a/one") is None
    bucket.delete_many(["a/two", "a/three"])
    assert bucket.walk("a") == {}
    with pytest.raises(StoreMissingError):
        bucket.get_bytes("a/two")


def test_keys_that_escape_or_confuse_the_prefix_are_refused(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    for key in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\\b", "a\nb"]:
        with pytest.raises(StoreError):
            bucket.put_bytes(key, b"x")
    assert s3.gateway.requests == []


def test_keys_with_plus_and_unicode_round_trip(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    keys = ["c/linux-64/torch-2.1.0+cpu-py_0.conda", "c/noarch/ü-1-0.conda", "c/a b!.json"]
    for key in keys:
        bucket.put_bytes(key, key.encode())
    assert {k: bucket.get_bytes(k) for k in keys} == {k: k.encode() for k in keys}
    assert set(bucket.walk("c")) == {k[2:] for k in keys}


def test_a_public_prefix_is_served_over_plain_http_with_its_headers(s3: S3Bucket) -> None:
    """What conda or py-rattler see reading the bucket by path-style URL, without credentials."""
    bucket = s3.bucket("channels")
    repodata = json.dumps({"info": {"subdir": "noarch"}, "packages": {}}).encode()
    bucket.put_bytes("c/noarch/repodata.json", repodata)
    bucket.put_bytes("c/noarch/x-1-0.conda", b"conda bytes")
    status, _, _ = s3.http_get("channels/c/noarch/repodata.json")
    assert status == 403  # private until the site says otherwise
    s3.make_public("channels")
    status, body, headers = s3.http_get("channels/c/noarch/repodata.json")
    assert (status, body) == (200, repodata)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "public, max-age=60, must-revalidate"
    assert headers["etag"] == bucket.head("c/noarch/repodata.json").etag  # type: ignore[union-attr]
    status, body, headers = s3.http_get("channels/c/noarch/x-1-0.conda")
    assert (status, body, headers["cache-control"]) == (
        200,
        b"conda bytes",
        "public, max-age=86400",
    )
    assert bucket.http_url("c/noarch/x-1-0.conda") == (
        f"{s3.url}/{s3.name}/channels/c/noarch/x-1-0.conda"
    )


def test_a_plus_in_a_plain_http_path_names_the_same_object(s3: S3Bucket) -> None:
    bucket = s3.bucket("channels")
    bucket.put_bytes("c/linux-64/torch-2.1.0+cpu-py_0.conda", b"plus")
    s3.make_public("channels")
    assert s3.http_get("channels/c/linux-64/torch-2.1.0+cpu-py_0.conda")[:2] == (200, b"plus")


def test_a_missing_bucket_is_named_with_what_to_do(s3: S3Bucket) -> None:
    location = s3.location("p")
    other = Bucket(
        type(location)("no-such-bucket-here", "p", endpoint_url=s3.url, region="us-east-1"),
        environ={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "HOME": "/nonexistent"},
    )
    with pytest.raises(StoreError) as caught:
        other.put_bytes("k", b"1")
    assert "bucket 'no-such-bucket-here' does not exist" in str(caught.value)
    assert "s3://no-such-bucket-here/p/k" in str(caught.value)


def test_unchanged_bytes_are_not_sent_and_changes_are_conditional(s3: S3Bucket) -> None:
    """The index writer's primitive: a no-op publish sends nothing; a stale writer is refused."""
    bucket = s3.bucket("channels")
    key = "c/noarch/repodata.json"
    written, etag = bucket.put_if_changed(key, b"v1", last_etag=None)
    assert written
    listed = bucket.list_dir("c/noarch").objects["repodata.json"].etag  # what a new run sees
    s3.gateway.clear()
    assert bucket.put_if_changed(key, b"v1", last_etag=listed) == (False, etag)
    assert s3.gateway.requests == []
    written, newer = bucket.put_if_changed(key, b"v2", last_etag=listed)
    assert written and s3.gateway.requests_of("PUT")[0].headers["if-match"] == etag
    with pytest.raises(StoreConflictError):  # a writer that still believes in v1
        bucket.put_if_changed(key, b"v3", last_etag=etag)
    with pytest.raises(StoreConflictError):  # one that believes there is none
        bucket.put_if_changed(key, b"v3", last_etag=None)
    data, stat = bucket.get_object(key)
    assert (data, stat.etag) == (b"v2", newer)


def test_virtual_hosted_addressing_names_the_bucket_in_the_host(s3: S3Bucket) -> None:
    virtual = s3.virtual_bucket("channels")
    virtual.put_bytes("c/noarch/repodata.json", b"{}")
    put = s3.gateway.requests_of("PUT")[-1]
    assert put.headers["host"] == f"{s3.name}.s3.amazonaws.com"
    assert put.path == "/channels/c/noarch/repodata.json"
    assert s3.bucket("channels").get_bytes("c/noarch/repodata.json") == b"{}"
    assert set(virtual.walk("c")) == {"noarch/repodata.json"}


def test_a_stream_broken_off_mid_body_resumes_where_it_stopped(s3: S3Bucket) -> None:
    bucket = s3.bucket()
    data = os.urandom(3 * MIB)
    bucket.put_bytes("c/noarch/big-1-0.conda", data)
    s3.gateway.clear()
    s3.gateway.fail_next("truncate", "truncate")
    assert b"".join(bucket.iter_bytes("c/noarch/big-1-0.conda")) == data
    gets = s3.gateway.requests_of("GET")
    assert [r.fault for r in gets] == ["truncate", "truncate", None]
    starts = [int(r.headers.get("range", "bytes=0-")[6:].split("-")[0]) for r in gets]
    assert starts[0] == 0 < starts[1] < starts[2]  # each try went on from where it broke


def test_a_stream_broken_more_often_than_obstore_resumes_is_resumed_again(
    s3: S3Bucket,
) -> None:
    """obstore resumes a broken body itself (attempts - 1 times); past that, iter_bytes
    reopens it with a ranged GET conditional on the first ETag."""
    bucket = s3.bucket()  # FAST_RETRIES: 6 attempts
    data = os.urandom(3 * MIB)
    etag = bucket.put_bytes("c/noarch/big-1-0.conda", data)
    s3.gateway.clear()
    s3.gateway.fail_next(*["truncate"] * 7)
    assert b"".join(bucket.iter_bytes("c/noarch/big-1-0.conda")) == data
    gets = s3.gateway.requests_of("GET")
    assert len(gets) == 8
    assert any(r.headers.get("if-match") == etag for r in gets)


def test_a_stream_of_an_object_replaced_meanwhile_is_not_spliced(s3: S3Bucket) -> None:
    bucket = s3.bucket()
    bucket.put_bytes("c/noarch/x.json", os.urandom(2 * MIB))
    s3.gateway.fail_next("truncate")
    chunks = bucket.iter_bytes("c/noarch/x.json", chunk_bytes=64 * 1024)
    first = next(chunks)
    bucket.put_bytes("c/noarch/x.json", b"a new version")
    with pytest.raises(StoreError):
        b"".join([first, *chunks])
