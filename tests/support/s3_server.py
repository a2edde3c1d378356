"""A real S3 server for tests: moto's ThreadedMotoServer on 127.0.0.1 (a free port), buckets,
public-read policies, dummy credentials, and an S3Gateway in front that checks checksums the
way AWS does (moto does not), records requests and injects faults on demand.

    with running_moto() as moto:
        with s3_bucket(moto, "tree") as s3:      # a fresh bucket behind its own gateway
            bucket = s3.bucket("channels")       # a mirror Bucket on prefix channels/
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from moto.server import ThreadedMotoServer

from mirror.adapters.objectstore import Bucket, BucketLocation, RetryPolicy
from tests.support.s3_gateway import S3Gateway

__all__ = ["ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "S3Bucket", "running_moto", "s3_bucket"]

# dummy credentials, distinctive so that a test can prove they never leak into a message
ACCESS_KEY_ID = "AKIAMIRRORTESTKEY0001"
SECRET_ACCESS_KEY = "mirror-test-secret-Zq8Vx2pL"
SESSION_TOKEN = "mirror-test-session-Tk7Wm3"
REGION = "us-east-1"
# retries fast enough for tests, as many as a real run
FAST_RETRIES = RetryPolicy(attempts=6, initial_backoff_s=0.01, max_backoff_s=0.1)


@dataclass(frozen=True)
class Moto:
    server: ThreadedMotoServer
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """A plain, unsigned request straight to moto (it does not check signatures)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()


@contextlib.contextmanager
def running_moto() -> Iterator[Moto]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield Moto(server, server.get_host_and_port()[1])
    finally:
        server.stop()


def environment() -> dict[str, str]:
    """What a host running mirror against the test server has in its environment."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_REGION": REGION,
        "HOME": "/nonexistent",
    }


@dataclass
class S3Bucket:
    """One bucket in moto, reached through its own gateway (`url`) or directly (`moto.url`)."""

    moto: Moto
    gateway: S3Gateway
    name: str

    @property
    def url(self) -> str:
        return self.gateway.url

    def location(self, prefix: str = "", *, direct: bool = False) -> BucketLocation:
        endpoint = self.moto.url if direct else self.gateway.url
        return BucketLocation(self.name, prefix, endpoint_url=endpoint, region=REGION)

    def bucket(self, prefix: str = "", *, direct: bool = False, **options: Any) -> Bucket:
        """A mirror Bucket on this bucket under `prefix`, with the test credentials."""
        options.setdefault("retry", FAST_RETRIES)
        options.setdefault("environ", environment())
        return Bucket(self.location(prefix, direct=direct), **options)

    def virtual_bucket(self, prefix: str = "", **options: Any) -> Bucket:
        """A Bucket addressing this one virtual-hosted style (`<bucket>.s3.amazonaws.com`,
        which moto recognises), its requests sent through the gateway as an HTTP proxy:
        127.0.0.1 has no DNS names with the bucket in them."""
        options.setdefault("retry", FAST_RETRIES)
        options.setdefault("environ", environment())
        location = BucketLocation(
            self.name,
            prefix,
            endpoint_url="http://s3.amazonaws.com",
            region=REGION,
            addressing="virtual",
        )
        return Bucket(location, proxy_url=self.gateway.url, **options)

    def make_public(self, prefix: str = "") -> None:
        """The policy a site serving the bucket over plain http sets: anyone may GET objects
        under the prefix (and nothing else)."""
        resource = f"arn:aws:s3:::{self.name}/{prefix + '/' if prefix else ''}*"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": resource,
                }
            ],
        }
        status, body, _ = self.moto.request(
            "PUT", f"/{self.name}?policy", json.dumps(policy).encode()
        )
        assert status in (200, 204), body

    def http_base(self, prefix: str = "") -> str:
        """The plain http URL of a prefix, path-style: a channel URL for conda or py-rattler
        (`f"{s3.http_base('channels')}/conda-forge"`), once make_public() allows it."""
        return f"{self.url}/{self.name}" + (f"/{prefix}" if prefix else "")

    def http_get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        """An anonymous GET of `/<bucket>/<path>` through the gateway, as conda does it."""
        connection = http.client.HTTPConnection("127.0.0.1", int(self.url.rsplit(":", 1)[1]))
        try:
            connection.request("GET", f"/{self.name}/{path}")
            response = connection.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, response.read(), headers
        finally:
            connection.close()


@contextlib.contextmanager
def s3_bucket(moto: Moto, stem: str = "tree") -> Iterator[S3Bucket]:
    """A fresh bucket (a unique name, so tests never see each other's objects)."""
    name = f"{stem}-{uuid.uuid4().hex[:12]}"
    status, body, _ = moto.request("PUT", f"/{name}")
    assert status == 200, body
    with S3Gateway(moto.port) as gateway:
        yield S3Bucket(moto, gateway, name)
