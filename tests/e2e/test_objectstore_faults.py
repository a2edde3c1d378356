"""A server failing a fifth of all requests still gets every write, intact; retries are bounded."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mirror.adapters.objectstore import RetryPolicy
from mirror.errors import StoreConflictError, StoreError
from tests.support.s3_server import S3Bucket

MIB = 1024 * 1024
# enough tries that 20% faults practically never exhaust them (0.2^8), still fast
PATIENT = RetryPolicy(attempts=8, initial_backoff_s=0.005, max_backoff_s=0.05)


def test_a_fifth_of_requests_failing_with_500_and_slowdown_still_converges(
    s3: S3Bucket, tmp_path: Path
) -> None:
    bucket = s3.bucket(
        "tree", retry=PATIENT, multipart_threshold_bytes=5 * MIB, part_size_bytes=5 * MIB
    )
    payloads = {f"c/noarch/p{i:03}-1-0.conda": os.urandom(500 + i) for i in range(120)}
    big = os.urandom(11 * MIB)
    (tmp_path / "big").write_bytes(big)
    s3.gateway.fail_randomly(0.2, ["500", "503"], seed=7)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: bucket.put_bytes(item[0], item[1]), payloads.items()))
    bucket.put_file("c/linux-64/big-1-0.conda", tmp_path / "big")
    etag = bucket.put_bytes("c/noarch/repodata.json", b"v1", create_only=True)
    etag = bucket.put_bytes("c/noarch/repodata.json", b"v2", if_match=etag)
    with ThreadPoolExecutor(8) as pool:
        read = dict(zip(payloads, pool.map(bucket.get_bytes, payloads), strict=True))
    listed = bucket.walk("c")
    bucket.delete_many(list(payloads)[:60])
    remaining = bucket.walk("c/noarch")
    ranged = bucket.get_range("c/linux-64/big-1-0.conda", MIB, 2 * MIB)
    streamed = hashlib.sha256(b"".join(bucket.iter_bytes("c/linux-64/big-1-0.conda")))

    faults = [r for r in s3.gateway.requests if r.fault]
    assert len(faults) > 40  # the faults really happened, on every kind of request
    assert {r.fault for r in faults} == {"500", "503"}
    assert {r.method for r in faults} >= {"PUT", "GET", "POST"}
    assert read == payloads
    assert len(listed) == len(payloads) + 2
    assert set(remaining) == {k.rsplit("/", 1)[1] for k in list(payloads)[60:]} | {"repodata.json"}
    assert ranged == big[MIB : 2 * MIB]
    assert streamed.digest() == hashlib.sha256(big).digest()
    s3.gateway.heal()
    assert bucket.get_bytes("c/noarch/repodata.json") == b"v2"


@pytest.mark.parametrize("kinds", [["reset"], ["lost_reply"], ["late_500"], ["429"]], ids=str)
def test_conditional_writes_survive_broken_connections_and_throttling(
    s3: S3Bucket, kinds: list[str]
) -> None:
    """A conditional PUT whose reply was lost may have happened: when the retry is refused,
    the object is read back, and if it holds our bytes the write counts as done."""
    bucket = s3.bucket("tree", retry=PATIENT)
    s3.gateway.fail_randomly(0.3, kinds, seed=3)
    for i in range(30):
        key = f"c/noarch/repodata-{i}.json"
        etag = bucket.put_bytes(key, b"first %d" % i, create_only=True)
        bucket.put_bytes(key, b"second %d" % i, if_match=etag)
    s3.gateway.heal()
    assert {bucket.get_bytes(f"c/noarch/repodata-{i}.json") for i in range(30)} == {
        b"second %d" % i for i in range(30)
    }
    assert any(r.fault for r in s3.gateway.requests)
    if kinds in (["lost_reply"], ["late_500"]):  # the ambiguous case came up and was settled
        assert any(r.status == 412 for r in s3.gateway.requests)


def test_a_lost_reply_does_not_hide_a_real_conflict(s3: S3Bucket) -> None:
    bucket = s3.bucket("tree", retry=PATIENT)
    bucket.put_bytes("c/noarch/repodata.json", b"someone else's")
    s3.gateway.fail_randomly(1.0, ["lost_reply"])
    with pytest.raises(StoreError):
        bucket.put_bytes("c/noarch/repodata.json", b"ours", create_only=True)
    s3.gateway.heal()
    assert bucket.get_bytes("c/noarch/repodata.json") == b"someone else's"


@pytest.mark.parametrize(
    ("kind", "conditional"),
    [("503", False), ("503", True), ("500", False), ("reset", True), ("reset", False)],
)
def test_retries_are_bounded_by_the_policy(s3: S3Bucket, kind: str, conditional: bool) -> None:
    """Whoever retries (obstore per request, or our layer), one write makes `attempts` tries."""
    policy = RetryPolicy(attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01)
    bucket = s3.bucket("tree", retry=policy)
    s3.gateway.fail_randomly(1.0, [kind])
    with pytest.raises(StoreError) as caught:
        bucket.put_bytes("c/noarch/x.json", b"x", create_only=conditional)
    assert not isinstance(caught.value, StoreConflictError)
    assert len(s3.gateway.requests_of("PUT")) == 4
    message = str(caught.value)
    assert "after 4 attempt(s)" in message
    assert f"s3://{s3.name}/tree/c/noarch/x.json" in message
    if kind == "503":
        assert "HTTP 503 SlowDown" in message


def test_requests_that_get_no_answer_in_time_are_sent_again(s3: S3Bucket) -> None:
    """obstore does not repeat a timed-out PUT (it may have landed); our layer does, and
    settles the doubt; reads it repeats itself. Either way the operation succeeds."""
    policy = RetryPolicy(
        attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, request_timeout_s=0.5
    )
    bucket = s3.bucket("tree", retry=policy)
    s3.gateway.stall_s = 0.8
    s3.gateway.fail_next("stall")
    etag = bucket.put_bytes("c/noarch/repodata.json", b"v1", create_only=True)
    s3.gateway.fail_next("stall")
    assert bucket.get_bytes("c/noarch/repodata.json") == b"v1"
    s3.gateway.fail_next("stall")
    bucket.put_bytes("c/noarch/repodata.json", b"v2", if_match=etag)
    assert [r.fault for r in s3.gateway.requests] == ["stall", None, "stall", None, "stall", None]
    assert bucket.get_bytes("c/noarch/repodata.json") == b"v2"
