"""Fixtures with real parts for end-to-end tests: an S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.s3_server import Moto, S3Bucket, environment, running_moto, s3_bucket

# variables of the AWS chain that would point a test at something other than its server
_FOREIGN_AWS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    """One moto server for the session; each test gets buckets of its own."""
    with running_moto() as moto:
        yield moto


@pytest.fixture
def s3(moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A fresh bucket behind a fresh checking gateway, and the dummy credentials in the
    environment (as a host running mirror against it would have them)."""
    for name in _FOREIGN_AWS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment().items():
        monkeypatch.setenv(name, value)
    with s3_bucket(moto_server) as bucket:
        yield bucket
