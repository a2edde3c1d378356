"""Looking after a tree in a bucket: `verify` finds objects damaged or deleted behind the
mirror's back and `verify --repair` puts them right, `status` and `snapshots` read it, and a
bundle exported from one bucket tree and imported into another gives the same objects; the
bucket policy the docs give serves the channels and keeps mirror's own files private."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mirror.core.object_headers import is_served
from tests.conftest import REPO, CliResult, run_cli
from tests.support.bucket_site import bucket_config, index_problems, published
from tests.support.builder import PackageSpec, build_channel
from tests.support.s3_server import S3Bucket, environment
from tests.support.upstream_server import UpstreamServer

SUBDIRS = ["linux-64", "noarch"]


def cli(*args: str) -> CliResult:
    return run_cli(list(args), env=environment())


def served(s3: S3Bucket, prefix: str) -> dict[str, bytes]:
    bucket = s3.bucket(prefix)
    return {key: bucket.get_bytes(key) for key in bucket.walk("") if is_served(key)}


def test_verify_repair_status_snapshots_export_and_import_work_on_bucket_trees(
    tmp_path: Path, s3: S3Bucket
) -> None:
    specs = [PackageSpec(f"pkg{i}", "1.0", subdir=SUBDIRS[i % 2]) for i in range(6)]
    build_channel(tmp_path / "upstream", specs)
    with UpstreamServer(tmp_path / "upstream") as server:
        connected = bucket_config(
            tmp_path / "connected", s3, {"up": {"upstream": server.url, "subdirs": SUBDIRS}},
            prefix="connected",
        )  # fmt: skip
        offline = bucket_config(
            tmp_path / "offline", s3, {"up": {"subdirs": SUBDIRS}}, prefix="offline"
        )
        assert cli("sync", "--config", str(connected)).code == 0

        # damage done behind the mirror's back: one package gone, one with other bytes
        bucket = s3.bucket("connected")
        bucket.delete("up/linux-64/pkg0-1.0-0.conda")
        bucket.put_bytes("up/noarch/pkg1-1.0-0.conda", b"not the package any more")
        found = cli("verify", "--config", str(connected))
        assert found.code == 1, found.stdout + found.stderr
        assert "pkg0-1.0-0.conda" in found.stdout and "pkg1-1.0-0.conda" in found.stdout
        repaired = cli("verify", "--repair", "--config", str(connected))
        assert repaired.code == 0, repaired.stdout + repaired.stderr
    assert cli("verify", "--full", "--config", str(connected)).code == 0
    assert index_problems(bucket) == []
    assert published(bucket, "up", "linux-64") | published(bucket, "up", "noarch") == {
        spec.filename for spec in specs
    }

    status = cli("status", "--json", "--config", str(connected))
    assert status.code == 0, status.stderr
    rows = {(r["channel"], r["subdir"]): r for r in json.loads(status.stdout)}
    assert rows[("up", "linux-64")]["packages"] == 3
    assert rows[("up", "noarch")]["last_outcome"] == "ok"

    snapshots = cli("snapshots", "--json", "--config", str(connected))
    assert snapshots.code == 0, snapshots.stderr
    assert [row["channel"] for row in json.loads(snapshots.stdout)][-1:] == ["up"]

    exported = cli(
        "export", "--full", "--out", str(tmp_path / "bundle"), "--config", str(connected)
    )
    assert exported.code == 0, exported.stderr
    imported = cli("import", str(tmp_path / "bundle"), "--config", str(offline))
    assert imported.code == 0, imported.stdout + imported.stderr
    assert served(s3, "offline") == served(s3, "connected")
    assert cli("verify", "--full", "--config", str(offline)).code == 0


def documented_policy(bucket: str, prefix: str) -> bytes:
    """The bucket policy docs/object-storage.md gives, for this bucket and prefix."""
    page = (REPO / "docs" / "object-storage.md").read_text()
    block = re.search(r"```json\n(\{\n  \"Version\".*?)```", page, re.DOTALL)
    assert block is not None, "the policy block is gone from docs/object-storage.md"
    text = block.group(1).replace("conda-mirror/channels", f"{bucket}/{prefix}")
    return json.dumps(json.loads(text)).encode()


def test_the_documented_bucket_policy_serves_the_channels_and_not_mirrors_own_files(
    tmp_path: Path, s3: S3Bucket
) -> None:
    build_channel(tmp_path / "upstream", [PackageSpec("served", "1.0")])
    config = bucket_config(
        tmp_path, s3, {"up": {"upstream": str(tmp_path / "upstream"), "subdirs": ["noarch"]}},
        prefix="channels",
    )  # fmt: skip
    assert cli("sync", "--config", str(config)).code == 0
    s3.bucket("other").put_bytes("up/noarch/repodata.json", b"{}")  # beside the prefix
    status, body, _ = s3.moto.request(
        "PUT", f"/{s3.name}?policy", documented_policy(s3.name, "channels")
    )
    assert status in (200, 204), body
    for key in ("up/noarch/repodata.json", "up/noarch/served-1.0-0.conda"):
        assert s3.http_get(f"channels/{key}")[0] == 200, key
    for key in (".mirror-lease.json", "up/.mirror-channel.json"):
        assert s3.bucket("channels").head(key) is not None  # there, and private
        assert s3.http_get(f"channels/{key}")[0] == 403, key
    assert s3.http_get("other/up/noarch/repodata.json")[0] == 403  # there, outside the prefix
