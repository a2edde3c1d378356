"""Where a tree lives in an object store (bucket, prefix, endpoint, region, addressing), and
which object keys are acceptable in it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from mirror.errors import ConfigError, StoreError

Addressing = Literal["path", "virtual"]
ADDRESSING_STYLES: tuple[Addressing, ...] = ("path", "virtual")
# S3's rules for new buckets: 3-63 characters, lower-case letters, digits, dots and hyphens,
# beginning and ending with a letter or digit
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MAX_KEY_BYTES = 1024  # S3's limit on a whole key, prefix included


@dataclass(frozen=True, slots=True)
class BucketLocation:
    """A tree's root in a bucket. `prefix` has no leading or trailing '/' ('' is the bucket's
    root); `endpoint_url` None means AWS itself (or AWS_ENDPOINT_URL from the environment)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    addressing: Addressing = "path"

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket) or ".." in self.bucket:
            raise ConfigError(
                f"{self.bucket!r} is not a valid S3 bucket name (3-63 lower-case letters, "
                "digits, dots and hyphens): correct the s3:// root"
            )
        prefix = self.prefix.strip("/")
        problem = _segments_problem(prefix) if prefix else None
        if problem is not None:
            raise ConfigError(f"refusing the prefix of s3://{self.bucket}/{self.prefix}: {problem}")
        object.__setattr__(self, "prefix", prefix)
        if self.addressing not in ADDRESSING_STYLES:
            raise ConfigError(f"storage.addressing is {self.addressing!r}: use 'path' or 'virtual'")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing: Addressing = "path",
    ) -> BucketLocation:
        """`s3://bucket/some/prefix` (the form `root:` takes in the configuration)."""
        if not url.startswith("s3://"):
            raise ConfigError(f"{url!r} is not an s3:// URL: write s3://<bucket>/<prefix>")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return cls(bucket, prefix, endpoint_url, region, addressing)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def url_of(self, key: str) -> str:
        """How messages name an object: `s3://bucket/prefix/key`."""
        return f"{self.url}/{key}" if key else self.url

    def below(self, relative: str) -> BucketLocation:
        """The location of a tree under this one (`below('conda-forge')`)."""
        relative = relative.strip("/")
        check_key(self, relative)
        return replace(self, prefix=f"{self.prefix}/{relative}" if self.prefix else relative)


def check_key(location: BucketLocation, key: str) -> None:
    """Refuse keys that S3 would store under another name, or that escape the prefix."""
    problem = _segments_problem(key)
    if problem is not None:
        raise StoreError(f"refusing object key {location.url_of(key)!r}: {problem}")
    full = f"{location.prefix}/{key}" if location.prefix else key
    if len(full.encode()) > _MAX_KEY_BYTES:
        raise StoreError(f"refusing object key {location.url_of(key)}: longer than 1024 bytes")


def check_prefix(location: BucketLocation, prefix: str) -> None:
    """Like check_key, but '' (the whole tree) is allowed."""
    if prefix:
        check_key(location, prefix)


def _segments_problem(text: str) -> str | None:
    if not text or text.startswith("/") or text.endswith("/"):
        return "it must not be empty or begin or end with '/'"
    if any(segment in ("", ".", "..") for segment in text.split("/")):
        return "it has an empty, '.' or '..' path segment"
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in text):
        return "it has a control character or a backslash"
    return None
