"""Config of a tree in a bucket: `root: s3://...` with its `storage` block, its defaults, what
`check-config` shows of it, and every mistake named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.config import load_config
from mirror.config.model import MirrorConfig, describe
from mirror.errors import ConfigError

CHANNELS = "channels:\n  c:\n    upstream: up\n    subdirs: [noarch]\n"
BUCKET = "root: s3://conda-mirror/channels\nstate_dir: state\n" + CHANNELS


def load_text(tmp_path: Path, text: str) -> MirrorConfig:
    path = tmp_path / "mirror.yaml"
    path.write_text(text)
    (tmp_path / "up").mkdir(exist_ok=True)
    return load_config(path)


def test_a_bucket_root_with_every_storage_key_is_read_and_shown_by_check_config(
    tmp_path: Path,
) -> None:
    storage = (
        "storage:\n  endpoint_url: https://minio.example:9000\n  region: eu-west-1\n"
        "  addressing: virtual\n  lease_ttl_s: 30\n  max_uploads: 32\n"
    )
    config = load_text(tmp_path, BUCKET + storage)
    assert config.root is None
    assert config.tree_location == "s3://conda-mirror/channels"
    assert describe(config)["storage"] == {
        "endpoint_url": "https://minio.example:9000",
        "region": "eu-west-1",
        "addressing": "virtual",
        "lease_ttl_s": 30,
        "max_uploads": 32,
    }


def test_without_a_storage_block_the_defaults_apply(tmp_path: Path) -> None:
    config = load_text(tmp_path, BUCKET)
    assert config.bucket is not None and config.bucket.addressing == "path"
    assert (config.storage.lease_ttl_s, config.storage.max_uploads) == (60.0, 8)


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("  max_uploads: 0\n", ":3: storage.max_uploads: must be at least 1"),
        ("  max_uploads: 300\n", ":3: storage.max_uploads: at most 256 uploads at once"),
        ("  lease_ttl_s: 2\n", ":3: storage.lease_ttl_s:"),
        ("  addressing: sideways\n", ":3: storage.addressing: use 'path'"),
        ("  max_upload: 8\n", ":3: storage.max_upload: unknown key; did you mean 'max_uploads'"),
        ("  secret_access_key: x\n", ":3: storage.secret_access_key: credentials are never read"),
        ("  endpoint_url: https://u:pw1234@minio:9000\n", ":3: storage.endpoint_url: the endpoint"),
    ],
)
def test_storage_mistakes_name_file_line_and_key(
    tmp_path: Path, storage: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, BUCKET.replace("state_dir", "storage:\n" + storage + "state_dir"))
    message = str(info.value)
    assert "mirror.yaml" in message and expected in message
    assert "pw1234" not in message


def test_a_storage_block_under_a_local_root_is_refused(tmp_path: Path) -> None:
    text = "root: tree\nstorage:\n  region: us-east-1\nstate_dir: state\n" + CHANNELS
    with pytest.raises(ConfigError, match=r":3: storage: 'storage' configures an object store"):
        load_text(tmp_path, text)
