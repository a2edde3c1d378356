"""The `root` key and, for a tree in an object store, the `storage` block.

    root: s3://conda-mirror/channels       # bucket and prefix; a local path works as today
    storage:                               # only for s3:// roots
      endpoint_url: https://minio.example:9000
      region: us-east-1
      addressing: path                     # or virtual
      lease_ttl_s: 60                      # how long the writer lease binds between renewals
      max_uploads: 8                       # PUTs of the tree's objects at once

Credentials are never read from here: they come from the AWS chain (environment, profile,
instance role).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mirror.config.model import StorageSettings
from mirror.config.yaml_view import YamlView
from mirror.core.bucket_location import ADDRESSING_STYLES, BucketLocation
from mirror.core.secrets import url_secrets
from mirror.errors import ConfigError

STORAGE_KEYS = ("endpoint_url", "region", "addressing", "lease_ttl_s", "max_uploads")
_SECRET_KEYS = ("access_key", "secret", "password", "token", "credentials")


def read_root(
    root: YamlView,
    storage: YamlView | None,
    base: Path,
    directory: Callable[[YamlView, Path], Path],
) -> tuple[Path | None, BucketLocation | None, StorageSettings]:
    """(a local root, or None and the bucket, with its settings)."""
    if root.string().startswith("s3://"):
        return None, *read_bucket_root(root, storage)
    path = directory(root, base)
    refuse_storage_for_local_root(path, storage)
    return path, None, StorageSettings()


def read_bucket_root(
    root: YamlView, storage: YamlView | None
) -> tuple[BucketLocation, StorageSettings]:
    """The bucket and prefix of an s3:// root with its `storage` settings."""
    fields = _storage_fields(storage)
    endpoint = fields["endpoint_url"].string() if "endpoint_url" in fields else None
    if endpoint is not None and url_secrets(endpoint):
        raise fields["endpoint_url"].error(
            "the endpoint URL holds a user name or password; credentials come from the AWS "
            "chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role), "
            "never from this file"
        )
    addressing = fields["addressing"].string() if "addressing" in fields else "path"
    if addressing not in ADDRESSING_STYLES:
        raise fields["addressing"].error("use 'path' (MinIO, Ceph, most servers) or 'virtual'")
    try:
        location = BucketLocation.from_url(
            root.string(),
            endpoint_url=endpoint,
            region=fields["region"].string() if "region" in fields else None,
            addressing=addressing,
        )
    except ConfigError as exc:
        raise root.error(str(exc)) from None
    ttl = fields["lease_ttl_s"].number(minimum=6, maximum=3600) if "lease_ttl_s" in fields else 60.0
    uploads = fields["max_uploads"].integer(minimum=1) if "max_uploads" in fields else 8
    if uploads > 256:
        raise fields["max_uploads"].error(f"at most 256 uploads at once, got {uploads}")
    return location, StorageSettings(lease_ttl_s=ttl, max_uploads=uploads)


def refuse_storage_for_local_root(root: Path, storage: YamlView | None) -> None:
    if storage is not None:
        raise storage.error(
            f"'storage' configures an object store, but root {root} is a local directory; "
            "write root: s3://<bucket>/<prefix>, or remove 'storage'"
        )


def _storage_fields(storage: YamlView | None) -> dict[str, YamlView]:
    if storage is None:
        return {}
    raw = storage.mapping()
    secret = next((k for k in raw if any(s in k.lower() for s in _SECRET_KEYS)), None)
    if secret is not None:
        raise raw[secret].error(
            "credentials are never read from the configuration file: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the service's environment instead"
        )
    return storage.mapping(STORAGE_KEYS)
