"""The inputs issue 11 listed, end to end: each used to stall a subdir, crash a run, or publish a
record py-rattler cannot read; now each is refused alone and the rest goes on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mirror.config import load_config
from mirror.core.records import RefusalReason
from mirror.sync.run import SyncOptions, run_sync
from tests.conftest import run_cli, write_config
from tests.support.builder import PackageSpec, build_channel, build_package
from tests.support.rattler_reads import assert_rattler_reads


def set_record(repodata: Path, filename: str, raw_tail: str) -> None:
    """Put raw JSON text (which json.dumps would not write) at the end of one record."""
    text = repodata.read_text()
    document = json.loads(text)
    group = "packages.conda" if filename.endswith(".conda") else "packages"
    record = dict(document[group][filename])
    record.pop("timestamp", None)
    document[group][filename] = "@@RECORD@@"
    body = json.dumps(record)[:-1] + ", " + raw_tail + "}"
    repodata.write_text(json.dumps(document).replace('"@@RECORD@@"', body))
    (repodata.parent / "repodata.json.zst").unlink(missing_ok=True)


@pytest.mark.parametrize(("rule", "days"), [("cooldown_days", 1), ("max_age_days", 36500)])
def test_a_timestamp_of_1e300_with_date_rules_is_refused_not_an_internal_error(
    tmp_path: Path, rule: str, days: int, caplog: pytest.LogCaptureFixture
) -> None:
    """It raised OverflowError (Python int too large to convert to SQLite INTEGER) every run."""
    up = tmp_path / "up"
    build_channel(up, [PackageSpec("good", "1.0"), PackageSpec("huge", "1.0")])
    set_record(up / "noarch" / "repodata.json", "huge-1.0-0.conda", '"timestamp": 1e300')
    channel = {"upstream": "up", "subdirs": ["noarch"], rule: days}
    config = load_config(write_config(tmp_path, {"c": channel}))

    with caplog.at_level(logging.WARNING):
        (report,) = run_sync(config, SyncOptions()).subdirs

    assert report.ok, report.message
    assert [(r.filename, r.reason) for r in report.refused] == [
        ("huge-1.0-0.conda", RefusalReason.BAD_TIMESTAMP)
    ]
    assert "internal error" not in caplog.text
    repodata = tmp_path / "tree" / "c" / "noarch" / "repodata.json"
    assert list(json.loads(repodata.read_bytes())["packages.conda"]) == ["good-1.0-0.conda"]
    assert_rattler_reads(repodata)


def test_a_local_package_with_a_float_timestamp_is_quarantined_by_a_plain_index(
    tmp_path: Path,
) -> None:
    """Even with --deep it used to be published, and every rattler solve of the name failed."""
    channel = tmp_path / "local"
    build_package(PackageSpec("good", "1.0"), channel / "noarch")
    build_package(
        PackageSpec("floaty", "1.0", extra_index={"timestamp": 1700000000.5}), channel / "noarch"
    )
    result = run_cli(["index", str(channel)])
    assert result.code == 1  # a file was quarantined
    assert "floaty-1.0-0.conda" in result.stderr and "timestamp" in result.stderr
    repodata = channel / "noarch" / "repodata.json"
    assert list(json.loads(repodata.read_bytes())["packages.conda"]) == ["good-1.0-0.conda"]
    assert_rattler_reads(repodata)


def test_a_local_package_cannot_claim_another_name_url_or_channel(tmp_path: Path) -> None:
    channel = tmp_path / "local"
    claims = {"fn": "other-9.9-0.conda", "url": "https://evil.example/x.conda", "channel": "x"}
    build_package(PackageSpec("pkg", "1.0", extra_index=claims), channel / "noarch")
    assert run_cli(["index", str(channel)]).code == 0
    document = json.loads((channel / "noarch" / "repodata.json").read_bytes())
    record = document["packages.conda"]["pkg-1.0-0.conda"]
    assert "url" not in record and "channel" not in record
    assert record.get("fn", "pkg-1.0-0.conda") == "pkg-1.0-0.conda"


def test_one_package_in_both_formats_with_different_metadata_is_a_warning(tmp_path: Path) -> None:
    channel = tmp_path / "local"
    build_package(PackageSpec("same", "1.0"), channel / "noarch")
    build_package(PackageSpec("same", "1.0", fmt=".tar.bz2"), channel / "noarch")
    build_package(PackageSpec("twin", "1.0", depends=("zlib >=1.3",)), channel / "noarch")
    build_package(
        PackageSpec("twin", "1.0", fmt=".tar.bz2", depends=("zlib >=1.2",)), channel / "noarch"
    )
    result = run_cli(["index", str(channel)])
    assert result.code == 0
    warnings = [line for line in result.stderr.splitlines() if "two formats" in line]
    assert len(warnings) == 1
    assert "twin-1.0-0.conda and twin-1.0-0.tar.bz2" in warnings[0] and "depends" in warnings[0]


def test_a_subdir_upstream_does_not_have_gets_an_empty_index_and_a_warning(tmp_path: Path) -> None:
    """It used to leave an empty folder with no index, which `mirror verify` then flagged."""
    build_channel(tmp_path / "up", [PackageSpec("a", "1.0", subdir="linux-64")])
    channel = {"upstream": "up", "subdirs": ["linux-64", "linux-aarch64", "noarch"]}
    config = write_config(tmp_path, {"c": channel})
    result = run_cli(["sync", "--config", str(config)])
    assert result.code == 0, result.stderr
    assert "upstream has no linux-aarch64" in result.stderr
    repodata = tmp_path / "tree" / "c" / "linux-aarch64" / "repodata.json"
    assert json.loads(repodata.read_bytes())["packages.conda"] == {}
    assert run_cli(["verify", "--config", str(config)]).code == 0
    assert run_cli(["sync", "--config", str(config)]).code == 0
