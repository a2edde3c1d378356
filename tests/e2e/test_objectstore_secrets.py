"""Credentials come from the AWS chain only and never show in an error, a log record or a repr."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror.adapters.objectstore import Bucket, BucketLocation, Lease, RetryPolicy
from mirror.errors import MirrorError
from tests.support.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, S3Bucket

QUICK = RetryPolicy(attempts=2, initial_backoff_s=0.001, max_backoff_s=0.01)
PROFILE_KEY_ID = "AKIAPROFILEKEY000002"
PROFILE_SECRET = "profile-secret-Hq4Nc9Ld"


def failures(s3: S3Bucket, bucket: Bucket) -> list[Callable[[], object]]:
    """One call for every way an operation can fail."""

    def faulted(kind: str, call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            s3.gateway.fail_randomly(1.0, [kind])
            try:
                return call()
            finally:
                s3.gateway.heal()

        return run

    def corrupted() -> object:
        s3.gateway.corrupt_next_uploads(10)
        try:
            return bucket.put_bytes("c/x.json", b"x")
        finally:
            s3.gateway.heal()

    missing_bucket = Bucket(BucketLocation("no-such-bucket", "p", endpoint_url=s3.url), retry=QUICK)
    bucket.put_bytes("c/exists.json", b"1")
    return [
        lambda: bucket.get_bytes("c/missing.json"),
        lambda: bucket.put_bytes("c/exists.json", b"2", create_only=True),
        lambda: bucket.put_bytes("c/exists.json", b"2", if_match='"stale"'),
        lambda: missing_bucket.put_bytes("k", b"1"),
        lambda: missing_bucket.walk(),
        faulted("denied", lambda: bucket.put_bytes("c/x.json", b"x")),
        faulted("denied", lambda: bucket.get_bytes("c/exists.json")),
        faulted("503", lambda: bucket.put_bytes("c/x.json", b"x")),
        faulted("reset", lambda: bucket.put_bytes("c/x.json", b"x", create_only=True)),
        faulted("lost_reply", lambda: bucket.delete("c/exists.json")),
        faulted("500", lambda: bucket.list_dir("c")),
        corrupted,
        lambda: Lease(bucket).acquire() and Lease(bucket).acquire(),
    ]


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a credential leaked into: {text!r}"


def test_no_error_or_log_record_contains_a_credential(
    s3: S3Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bucket = Bucket(s3.location("tree"), retry=QUICK)  # credentials from the environment
    errors: list[MirrorError] = []
    for call in failures(s3, bucket):
        with pytest.raises(MirrorError) as caught:
            call()
        errors.append(caught.value)
    # the 403 body echoed the session token: the test is only meaningful if it really did
    denied = [r for r in s3.gateway.requests if r.fault == "denied"]
    assert denied and all(r.headers["x-amz-security-token"] == SESSION_TOKEN for r in denied)
    secrets = (SECRET_ACCESS_KEY, SESSION_TOKEN, ACCESS_KEY_ID)
    for error in errors:
        assert_no_secret(str(error), *secrets)
        assert_no_secret("".join(traceback.format_exception(error)), *secrets)
        assert f"s3://{s3.name}/" in str(error) or "s3://no-such-bucket/" in str(error), error
    assert len({type(e) for e in errors}) >= 4
    for record in caplog.records:
        assert_no_secret(record.getMessage(), *secrets)
    assert caplog.records  # retries were logged (at DEBUG)
    assert_no_secret(repr(bucket) + repr(bucket.__dict__), *secrets)


def test_a_refused_signature_says_where_the_credentials_came_from(s3: S3Bucket) -> None:
    bucket = Bucket(s3.location("tree"), retry=QUICK)
    s3.gateway.fail_randomly(1.0, ["denied"])
    with pytest.raises(MirrorError) as caught:
        bucket.put_bytes("c/x.json", b"x")
    message = str(caught.value)
    assert "SignatureDoesNotMatch" in message
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment" in message


def test_credentials_of_an_aws_profile_are_used_and_never_shown(
    s3: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[ci]\naws_access_key_id = {PROFILE_KEY_ID}\naws_secret_access_key = {PROFILE_SECRET}\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_PROFILE", "ci")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    bucket = Bucket(s3.location("tree"), retry=QUICK)
    bucket.put_bytes("c/x.json", b"x")
    authorization = s3.gateway.requests_of("PUT")[-1].headers["authorization"]
    assert f"Credential={PROFILE_KEY_ID}/" in authorization
    s3.gateway.fail_randomly(1.0, ["denied"])
    with pytest.raises(MirrorError) as caught:
        bucket.put_bytes("c/x.json", b"y")
    assert "the AWS profile 'ci'" in str(caught.value)
    assert_no_secret(str(caught.value) + repr(bucket), PROFILE_SECRET, PROFILE_KEY_ID)


def test_an_unknown_profile_is_named_with_what_to_do(
    s3: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_PROFILE", "nope")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(MirrorError) as caught:
        Bucket(s3.location("tree"))
    assert "AWS profile 'nope'" in str(caught.value)
    assert "AWS_PROFILE" in str(caught.value)
