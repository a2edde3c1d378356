"""How a BucketLocation and the AWS environment become obstore's S3Store settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mirror import __version__
from mirror.adapters.objectstore.retry import RetryPolicy
from mirror.core.bucket_location import BucketLocation
from mirror.core.secrets import redact_url
from mirror.errors import ConfigError

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go. `url` None: AWS's own endpoint for the region."""

    url: str | None
    region: str

    @property
    def shown(self) -> str:
        """For messages: the endpoint without any user:password in it."""
        return redact_url(self.url) if self.url else f"AWS S3 ({self.region})"


def resolve_endpoint(location: BucketLocation, environ: Mapping[str, str]) -> Endpoint:
    """The configured endpoint wins; AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL apply only when
    none is configured (as in the AWS CLI); the region likewise."""
    url = (
        location.endpoint_url
        or environ.get("AWS_ENDPOINT_URL_S3")
        or environ.get("AWS_ENDPOINT_URL")
        or None
    )
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"storage.endpoint_url {redact_url(url)!r} is not an http(s):// URL: write "
                "e.g. https://minio.example:9000"
            )
        url = url.rstrip("/")
    region = (
        location.region
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )
    return Endpoint(url, region)


def store_settings(
    location: BucketLocation,
    endpoint: Endpoint,
    policy: RetryPolicy,
    *,
    proxy_url: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for obstore.store.S3Store (credentials aside)."""
    config: dict[str, Any] = {
        "region": endpoint.region,
        # every PUT and every part carries x-amz-checksum-sha256, which the server verifies
        "checksum_algorithm": "sha256",
        # If-Match / If-None-Match on PUT (AWS since 2024, MinIO, Ceph RGW)
        "conditional_put": "etag",
        "virtual_hosted_style_request": location.addressing == "virtual",
    }
    if endpoint.url is not None:
        config["endpoint"] = (
            _with_bucket_host(endpoint.url, location.bucket)
            if location.addressing == "virtual"
            else endpoint.url
        )
    client_options: dict[str, Any] = {
        "allow_http": endpoint.url is not None and endpoint.url.startswith("http://"),
        "timeout": timedelta(seconds=policy.request_timeout_s),
        "connect_timeout": timedelta(seconds=policy.connect_timeout_s),
        "user_agent": f"mirror/{__version__}",
    }
    if proxy_url is not None:
        client_options["proxy_url"] = proxy_url
    return {
        "prefix": location.prefix or None,
        "config": config,
        "client_options": client_options,
        "retry_config": policy.obstore_config(),
    }


def path_style_url(location: BucketLocation, endpoint: Endpoint, key: str) -> str:
    """The plain http(s) URL of an object, as a client without credentials fetches it."""
    base = endpoint.url or f"https://s3.{endpoint.region}.amazonaws.com"
    full = f"{location.prefix}/{key}" if location.prefix else key
    return f"{base}/{location.bucket}/{full}"


def _with_bucket_host(url: str, bucket: str) -> str:
    """Virtual-hosted addressing names the bucket in the host: https://bucket.minio.example."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{bucket}.{hostport}"))
