"""The object-store adapter's pure parts: locations, endpoints, credentials, failures, retries."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from obstore.exceptions import AlreadyExistsError, GenericError, PreconditionError

from mirror.adapters.objectstore.connect import (
    path_style_url,
    resolve_endpoint,
    store_settings,
)
from mirror.adapters.objectstore.credentials import choose_credentials
from mirror.adapters.objectstore.failures import Context, diagnose, translate
from mirror.adapters.objectstore.objects import etag_names
from mirror.adapters.objectstore.retry import Retrier, RetryPolicy
from mirror.core.bucket_location import BucketLocation, check_key
from mirror.core.secrets import Redactor
from mirror.errors import ConfigError, StoreConflictError, StoreError, StoreMissingError

# the shapes of obstore 0.12's messages (abridged), as seen against a real server
SLOWDOWN_EXHAUSTED = (
    "Generic S3 error: Error performing PUT http://h/b/k in 17ms, after 2 retries, max_retries:"
    " 2, retry_timeout: 180s  - Server returned non-2xx status code: 503 Service Unavailable: "
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please '
    "reduce your request rate.</Message></Error>\n\nDebug source:\nGeneric {\n    store: "
    '"S3",\n    source: RetryError(\n        RetryErrorImpl {\n            method: PUT,\n     '
    "       retries: 2,\n            max_retries: 2,\n            inner: Status {\n"
    "                status: 503,\n"
)
RESET_NOT_RETRIED = (
    "Generic S3 error: Error performing PUT http://h/b/k in 1.3ms - HTTP error: error sending "
    "request\n\nDebug source:\nGeneric {\n    source: RetryError(\n        RetryErrorImpl {\n"
    "            method: PUT,\n            retries: 0,\n            max_retries: 2,\n"
    "            inner: Http(\n                HttpError {\n                    kind: "
    "Interrupted,\n                    source: reqwest::Error {\n"
)
BAD_DIGEST = (
    "Generic S3 error: Error performing PUT http://h/b/k in 410µs - Server returned non-2xx "
    "status code: 400 Bad Request: <Error><Code>BadDigest</Code><Message>The SHA256 you "
    "specified did not match the calculated checksum.</Message></Error>\n\nDebug source:\n"
    "Generic {\n            retries: 0,\n            max_retries: 0,\n"
)
SIGNATURE = (
    "Generic S3 error: Error performing PUT http://h/b/k - Server returned non-2xx status "
    "code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code><Message>The request "
    "signature we calculated does not match the signature you provided.</Message>"
    "<CanonicalRequest>x-amz-security-token:TOKEN-SECRET-1234</CanonicalRequest></Error>"
)
CTX = Context("writing", "s3://b/p/k", "b", "http://h:9000", "the AWS profile 'ci'")


# -- locations and keys -------------------------------------------------------------------


def test_an_s3_url_gives_bucket_and_prefix() -> None:
    location = BucketLocation.from_url("s3://conda-mirror/channels/", region="eu-west-1")
    assert (location.bucket, location.prefix, location.region) == (
        "conda-mirror",
        "channels",
        "eu-west-1",
    )
    assert location.url_of("c/noarch/repodata.json") == (
        "s3://conda-mirror/channels/c/noarch/repodata.json"
    )
    assert BucketLocation.from_url("s3://conda-mirror").url == "s3://conda-mirror"
    assert location.below("conda-forge").prefix == "channels/conda-forge"


@pytest.mark.parametrize(
    ("url", "addressing"),
    [
        ("s3://Upper/x", "path"),
        ("s3://ab/x", "path"),
        ("s3://a..b/x", "path"),
        ("https://bucket/x", "path"),
        ("s3://bucket/a/../b", "path"),
        ("s3://bucket/x", "sideways"),
    ],
)
def test_invalid_locations_are_configuration_errors(url: str, addressing: str) -> None:
    with pytest.raises(ConfigError):
        BucketLocation.from_url(url, addressing=addressing)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key", ["", "/a", "a/", "a//b", "a/./b", "../a", "a/..", "a\\b", "a\x00b", "x" * 1030]
)
def test_keys_that_would_name_another_object_are_refused(key: str) -> None:
    with pytest.raises(StoreError):
        check_key(BucketLocation("bucket", "p"), key)


def test_ordinary_tree_keys_are_accepted() -> None:
    for key in ["c/linux-64/torch-2.1+cpu-py_0.conda", ".mirror-lease.json", "c/noarch/ü.json"]:
        check_key(BucketLocation("bucket", "p"), key)


# -- endpoints and the store's settings -----------------------------------------------------


def test_the_configured_endpoint_wins_over_the_environment() -> None:
    environ = {"AWS_ENDPOINT_URL": "http://env:1", "AWS_ENDPOINT_URL_S3": "http://s3env:2"}
    configured = BucketLocation("bucket", endpoint_url="https://minio.example:9000/")
    assert resolve_endpoint(configured, environ).url == "https://minio.example:9000"
    assert resolve_endpoint(BucketLocation("bucket"), environ).url == "http://s3env:2"
    assert resolve_endpoint(BucketLocation("bucket"), {"AWS_ENDPOINT_URL": "http://e:1"}).url == (
        "http://e:1"
    )
    assert resolve_endpoint(BucketLocation("bucket"), {}).url is None


def test_the_region_comes_from_the_location_then_the_environment() -> None:
    assert resolve_endpoint(BucketLocation("bucket", region="eu-1"), {"AWS_REGION": "x"}).region
    assert resolve_endpoint(BucketLocation("bucket"), {"AWS_DEFAULT_REGION": "ap-2"}).region == (
        "ap-2"
    )
    assert resolve_endpoint(BucketLocation("bucket"), {}).region == "us-east-1"


def test_an_endpoint_that_is_not_http_is_refused_without_showing_a_password() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_endpoint(BucketLocation("bucket", endpoint_url="ftp://u:pw1234@h"), {})
    assert "pw1234" not in str(caught.value)


def test_every_upload_is_checksummed_and_conditions_use_etags() -> None:
    location = BucketLocation("bucket", "channels", endpoint_url="http://127.0.0.1:9000")
    settings_ = store_settings(location, resolve_endpoint(location, {}), RetryPolicy(attempts=3))
    assert settings_["config"]["checksum_algorithm"] == "sha256"
    assert settings_["config"]["conditional_put"] == "etag"
    assert settings_["config"]["virtual_hosted_style_request"] is False
    assert settings_["client_options"]["allow_http"] is True
    assert settings_["retry_config"]["max_retries"] == 2
    assert settings_["prefix"] == "channels"


def test_virtual_addressing_puts_the_bucket_in_the_host() -> None:
    location = BucketLocation(
        "bucket", endpoint_url="https://minio.example:9000", addressing="virtual"
    )
    settings_ = store_settings(location, resolve_endpoint(location, {}), RetryPolicy())
    assert settings_["config"]["endpoint"] == "https://bucket.minio.example:9000"
    assert settings_["config"]["virtual_hosted_style_request"] is True
    assert settings_["client_options"]["allow_http"] is False


def test_the_plain_http_url_is_path_style() -> None:
    location = BucketLocation("bucket", "channels", endpoint_url="http://h:9000")
    endpoint = resolve_endpoint(location, {})
    assert path_style_url(location, endpoint, "c/noarch/x.conda") == (
        "http://h:9000/bucket/channels/c/noarch/x.conda"
    )
    aws = BucketLocation("bucket", region="eu-west-1")
    assert path_style_url(aws, resolve_endpoint(aws, {}), "k") == (
        "https://s3.eu-west-1.amazonaws.com/bucket/k"
    )


# -- credentials ------------------------------------------------------------------------------


def test_environment_keys_come_first_and_never_show() -> None:
    choice = choose_credentials(
        {
            "AWS_ACCESS_KEY_ID": "AKIA1",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
            "AWS_SESSION_TOKEN": "t0ken-value",
            "AWS_PROFILE": "ignored",
        }
    )
    assert choice.source == "environment"
    assert choice.static is not None and choice.static.session_token == "t0ken-value"
    shown = repr(choice) + choice.describe()
    assert "s3cr3t-value" not in shown and "t0ken-value" not in shown


def test_a_profile_or_shared_files_come_next_then_the_instance(tmp_path: Path) -> None:
    assert choose_credentials({"AWS_PROFILE": "ci", "HOME": str(tmp_path)}).profile == "ci"
    assert choose_credentials({"HOME": str(tmp_path)}).source == "instance"
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert choose_credentials({"HOME": str(tmp_path)}).source == "profile"
    half = {"AWS_ACCESS_KEY_ID": "AKIA1", "HOME": str(tmp_path / "none")}
    assert choose_credentials(half).source == "instance"  # a key id alone signs nothing


# -- failures -----------------------------------------------------------------------------


def test_a_failure_obstore_already_retried_is_not_retried_again() -> None:
    d = diagnose(GenericError(SLOWDOWN_EXHAUSTED))
    assert (d.status, d.code, d.retries, d.max_retries) == (503, "SlowDown", 2, 2)
    assert d.transient and not d.worth_retrying


def test_a_reset_obstore_did_not_retry_is_ours_to_retry() -> None:
    d = diagnose(GenericError(RESET_NOT_RETRIED))
    assert (d.status, d.transport, d.retries) == (None, "Interrupted", 0)
    assert d.worth_retrying


def test_a_damaged_body_is_worth_sending_again() -> None:
    d = diagnose(GenericError(BAD_DIGEST))
    assert (d.status, d.code) == (400, "BadDigest")
    assert d.worth_retrying


def test_conflicts_and_absence_have_their_own_errors() -> None:
    redact = Redactor()
    exists = translate(diagnose(AlreadyExistsError("412")), CTX, 1, redact)
    changed = translate(diagnose(PreconditionError("412")), CTX, 1, redact)
    missing = translate(diagnose(FileNotFoundError("404")), CTX, 1, redact)
    assert isinstance(exists, StoreConflictError) and "already exists" in str(exists)
    assert isinstance(changed, StoreConflictError) and "changed since" in str(changed)
    assert isinstance(missing, StoreMissingError) and "s3://b/p/k" in str(missing)


def test_a_refusal_keeps_the_code_and_message_but_not_the_echoed_request() -> None:
    error = translate(diagnose(GenericError(SIGNATURE)), CTX, 1, Redactor())
    message = str(error)
    assert "HTTP 403 SignatureDoesNotMatch" in message
    assert "the AWS profile 'ci'" in message and "s3://b/p/k" in message
    assert "TOKEN-SECRET-1234" not in message


def test_known_secrets_are_masked_even_in_a_server_message() -> None:
    text = BAD_DIGEST.replace("did not match", "did not match s3cr3t-value")
    error = translate(diagnose(GenericError(text)), CTX, 3, Redactor(["s3cr3t-value"]))
    assert "s3cr3t-value" not in str(error) and "after 3 attempt(s)" in str(error)


def test_an_outage_names_the_endpoint_and_what_to_do() -> None:
    error = translate(diagnose(GenericError(SLOWDOWN_EXHAUSTED)), CTX, 3, Redactor())
    assert "HTTP 503 SlowDown" in str(error)
    assert "http://h:9000" in str(error) and "run again" in str(error)


# -- retries --------------------------------------------------------------------------------


@settings(derandomize=True, max_examples=200)
@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_exponentially_within_its_cap(retry: int, seed: int) -> None:
    policy = RetryPolicy(initial_backoff_s=0.2, max_backoff_s=10.0)
    delay = policy.backoff_s(retry, random.Random(seed))
    assert 0 <= delay <= min(10.0, 0.2 * 2 ** (retry - 1))


def test_backoff_is_jittered() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=100.0)
    rng = random.Random(1)
    assert len({round(policy.backoff_s(5, rng), 6) for _ in range(20)}) == 20


def test_the_retrier_tries_up_to_the_policy_then_reports() -> None:
    slept: list[float] = []
    retrier = Retrier(RetryPolicy(attempts=3), Redactor(), sleep=slept.append, rng=random.Random(0))
    tries: list[int] = []

    def reset() -> None:
        tries.append(1)
        raise GenericError(RESET_NOT_RETRIED)

    with pytest.raises(StoreError) as caught:
        retrier.call(reset, CTX)
    assert len(tries) == 3 and len(slept) == 2
    assert "after 3 attempt(s)" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_the_retrier_returns_the_first_success() -> None:
    retrier = Retrier(RetryPolicy(attempts=5), Redactor(), sleep=lambda _: None)
    answers = iter([GenericError(BAD_DIGEST), GenericError(RESET_NOT_RETRIED), "done"])

    def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrier.call(flaky, CTX) == "done"


def test_invalid_retry_policies_are_refused() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)


def test_only_a_plain_md5_etag_proves_the_bytes_unchanged() -> None:
    md5 = hashlib.md5(b"data").hexdigest()
    assert etag_names(f'"{md5}"', b"data") and etag_names(md5, b"data")
    assert not etag_names(f'"{md5}"', b"other")
    assert not etag_names(f'"{md5}-2"', b"data")  # a multipart upload's ETag
    assert not etag_names('"W/abc"', b"data")
