"""The guards look over time as well as at one run: small deletions add up within the window,
and an upstream changing the bytes behind published names is stopped before it lands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import run_cli, write_config
from tests.support.builder import PackageSpec, build_channel

NAMES = [f"p{i:02d}" for i in range(20)]


def upstream(root: Path, names: list[str], payload: bytes = b"v1") -> None:
    shutil.rmtree(root, ignore_errors=True)
    build_channel(root, [PackageSpec(n, "1.0", files={"share/x": payload}) for n in names])


def published(tree: Path) -> dict[str, str]:
    document = json.loads((tree / "c" / "noarch" / "repodata.json").read_bytes())
    return {fn: r["sha256"] for fn, r in document["packages.conda"].items()}


def sync(config: Path, *flags: str) -> tuple[int, str]:
    result = run_cli(["sync", "--config", str(config), *flags])
    return result.code, result.stderr


def test_deletions_that_pass_one_by_one_are_stopped_within_the_window(tmp_path: Path) -> None:
    up = tmp_path / "up"
    upstream(up, NAMES)
    config = write_config(tmp_path, {"c": {"upstream": "up", "subdirs": ["noarch"]}})
    tree = tmp_path / "tree"
    assert sync(config)[0] == 0
    for gone in (1, 2):  # 1 of 20, then 2 of 20 within the window (10%: the limit)
        upstream(up, NAMES[gone:])
        assert sync(config)[0] == 0
    before = published(tree)
    upstream(up, NAMES[3:])  # a third: 15% within 7 days, 1 of 18 on its own

    dry_code, dry = sync(config, "--dry-run")
    code, text = sync(config)

    assert dry_code == 1
    assert "mass-deletion guard would stop this sync" in dry and "--allow-mass-delete" in dry
    assert code == 1
    assert "3 of 20 within 7 days (15%" in text and "p02-1.0-0.conda" in text
    assert "unchanged 17" in text  # the guarded summary counts what stays
    assert published(tree) == before
    assert (tree / "c" / "noarch" / "p02-1.0-0.conda").exists()

    assert sync(config, "--allow-mass-delete")[0] == 0  # accepted once: the window restarts
    assert "p02-1.0-0.conda" not in published(tree)
    upstream(up, NAMES[4:])
    assert sync(config)[0] == 0  # 1 of 17 since the accepted run


def test_upstream_changing_published_bytes_is_stopped_and_named(tmp_path: Path) -> None:
    up = tmp_path / "up"
    upstream(up, NAMES)
    config = write_config(tmp_path, {"c": {"upstream": "up", "subdirs": ["noarch"]}})
    tree = tmp_path / "tree"
    assert sync(config)[0] == 0
    before = published(tree)
    original = (tree / "c" / "noarch" / "p00-1.0-0.conda").read_bytes()
    # the same names, other bytes: 2 of 20 published files (10%, limit 2%)
    rebuilt = [PackageSpec(n, "1.0", files={"share/x": b"v2"}) for n in NAMES[:2]]
    kept = [PackageSpec(n, "1.0", files={"share/x": b"v1"}) for n in NAMES[2:]]
    shutil.rmtree(up)
    build_channel(up, [*rebuilt, *kept])

    code, text = sync(config)

    assert code == 1
    assert "change the bytes of 2 of 20 published files" in text
    assert "p00-1.0-0.conda, p01-1.0-0.conda" in text and "--allow-mass-replace" in text
    assert published(tree) == before
    assert (tree / "c" / "noarch" / "p00-1.0-0.conda").read_bytes() == original

    assert sync(config, "--allow-mass-replace")[0] == 0
    assert published(tree)["p00-1.0-0.conda"] != before["p00-1.0-0.conda"]
    assert sync(config)[0] == 0
