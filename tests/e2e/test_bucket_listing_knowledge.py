"""A bucket tree answers for a subdir's index files from the listing it just took (no HEAD per
output), and never from one that could be wrong: a key this writer wrote since, a package, a
listing older than LISTING_FRESH_S. A change another writer made after the listing still makes
the conditional index write fail: the listing's ETag is what the write is conditional on."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.adapters.objectstore import tree_store
from mirror.adapters.objectstore.tree_store import BucketStore
from mirror.errors import StoreConflictError
from tests.support.s3_server import S3Bucket

FOLDER = "chan/noarch"


def heads(s3: S3Bucket) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in s3.gateway.requests_of("HEAD")]


@pytest.fixture
def store(s3: S3Bucket, tmp_path: Path) -> BucketStore:
    bucket = s3.bucket("tree")
    bucket.put_bytes(f"{FOLDER}/repodata.json", b"{}")
    bucket.put_bytes(f"{FOLDER}/a-1.0-0.conda", b"package")
    return BucketStore(bucket, tmp_path / "staging")


def test_index_files_are_answered_from_a_fresh_listing(s3: S3Bucket, store: BucketStore) -> None:
    store.list_files(FOLDER)
    s3.gateway.requests.clear()
    assert store.stat(f"{FOLDER}/repodata.json") == store.list_files(FOLDER)["repodata.json"]
    assert store.stat(f"{FOLDER}/current_repodata.json") is None  # absent from the listing
    store.delete(f"{FOLDER}/repodata.json.bz2")  # absent: nothing to ask, nothing to delete
    assert heads(s3) == [] and s3.gateway.requests_of("DELETE") == []
    assert store.stat(f"{FOLDER}/a-1.0-0.conda") is not None  # a package is always asked
    assert heads(s3) == ["a-1.0-0.conda"]


def test_a_key_written_since_the_listing_is_asked_again(s3: S3Bucket, store: BucketStore) -> None:
    store.list_files(FOLDER)
    store.write(f"{FOLDER}/repodata.json", [b'{"new": 1}'])
    store.write(f"{FOLDER}/current_repodata.json", [b"{}"])
    s3.gateway.requests.clear()
    found = store.stat(f"{FOLDER}/repodata.json")
    assert found is not None and found.size == len(b'{"new": 1}')
    assert store.stat(f"{FOLDER}/current_repodata.json") is not None  # absent when listed
    assert sorted(heads(s3)) == ["current_repodata.json", "repodata.json"]


def test_an_old_listing_answers_nothing(
    s3: S3Bucket, store: BucketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.list_files(FOLDER)
    s3.bucket("tree").put_bytes(f"{FOLDER}/current_repodata.json", b"{}")  # by someone else
    monkeypatch.setattr(tree_store, "LISTING_FRESH_S", 0.0)
    s3.gateway.requests.clear()
    assert store.stat(f"{FOLDER}/current_repodata.json") is not None
    assert heads(s3) == ["current_repodata.json"]


def test_a_change_after_the_listing_fails_the_conditional_write(
    s3: S3Bucket, store: BucketStore
) -> None:
    store.begin_writing(lambda: None)
    store.list_files(FOLDER)
    s3.bucket("tree").put_bytes(f"{FOLDER}/repodata.json", b'{"other": 1}')  # another writer
    store.stat(f"{FOLDER}/repodata.json")  # the listing's version is the one seen first
    with pytest.raises(StoreConflictError):
        store.write(f"{FOLDER}/repodata.json", [b'{"mine": 1}'])
    assert s3.bucket("tree").get_bytes(f"{FOLDER}/repodata.json") == b'{"other": 1}'


def test_writing_begins_with_no_listing_remembered(s3: S3Bucket, store: BucketStore) -> None:
    store.list_files(FOLDER)
    store.begin_writing(lambda: None)  # a listing from before the lease is another time's
    s3.gateway.requests.clear()
    store.stat(f"{FOLDER}/repodata.json")
    assert heads(s3) == ["repodata.json"]
