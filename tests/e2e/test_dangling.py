"""Filters without `dependencies:` can leave records whose dependencies the tree lacks: a real
`mirror sync` says so (and still exits 0), `mirror status` and the daemon's metric show it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import UpstreamServer

ABI = "python_abi 3.12.* *_cp312"
SPECS = [
    PackageSpec("libzlib", "1.3.1", build="h0_0", subdir="linux-64"),
    PackageSpec("libblas", "3.9.0", build="h0_0", subdir="linux-64"),
    PackageSpec("python", "3.12.2", build="h0_0", subdir="linux-64",
                depends=("libzlib >=1.3", ABI, "__glibc >=2.17")),
    PackageSpec("numpy", "2.1.3", build="py312h0_0", subdir="linux-64",
                depends=("python >=3.12,<3.13.0a0", ABI, "libblas >=3.9")),
    PackageSpec("python_abi", "3.12", build="7_cp312"),
    PackageSpec("certifi", "2024.8.30", build="pyh_0", depends=("python >=3.7",)),
]  # fmt: skip


@pytest.fixture
def upstream(tmp_path: Path) -> Any:
    root = tmp_path / "upstream"
    build_channel(root, SPECS)
    with UpstreamServer(root) as server:
        yield server


def _config(base: Path, server: UpstreamServer, include: list[str]) -> Path:
    base.mkdir(exist_ok=True)
    channel = {"upstream": server.url, "subdirs": ["linux-64", "noarch"], "include": include}
    return write_config(base, {"up": channel})


def _status(config: Path) -> dict[str, dict[str, Any]]:
    result = run_cli(["status", "--json", "--config", str(config)])
    assert result.code == 0, result.stderr
    return {r["subdir"]: r for r in json.loads(result.stdout)}


def test_an_include_list_that_forgets_python_abi_is_reported_and_the_sync_still_succeeds(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    config = _config(tmp_path / "site", upstream, ["numpy", "python", "libzlib", "libblas"])
    first = run_cli(["sync", "--config", str(config)])
    assert first.code == 0, first.stderr
    assert "up/linux-64: 2 records depend on packages this channel does not hold (python_abi)" in (
        first.stderr
    )
    assert f"numpy-2.1.3-py312h0_0.conda needs '{ABI}'" in first.stderr
    assert "`dependencies: solve`" in first.stderr
    rows = _status(config)
    assert (rows["linux-64"]["dangling_dependencies"], rows["linux-64"]["dangling_names"]) == (
        2,
        ["python_abi"],
    )
    assert rows["noarch"]["dangling_dependencies"] == 0
    text = run_cli(["status", "--config", str(config)]).stdout
    assert "up/linux-64: warning: 2 records depend on packages" in text

    # nothing changed upstream or in the config: the stored answer, the same warning
    again = run_cli(["sync", "--config", str(config)])
    assert again.code == 0 and "2 records depend on packages" in again.stderr

    # python_abi lives in noarch: once it is included, nothing dangles any more
    _config(tmp_path / "site", upstream, ["numpy", "python", "libzlib", "libblas", "python_abi"])
    fixed = run_cli(["sync", "--config", str(config)])
    assert fixed.code == 0, fixed.stderr
    assert "depend on packages" not in fixed.stderr
    assert _status(config)["linux-64"]["dangling_dependencies"] == 0


def test_a_noarch_record_is_satisfied_by_any_platform_subdir(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    """certifi (noarch) needs python, which only linux-64 holds; nothing dangles."""
    config = _config(tmp_path / "site", upstream, ["certifi", "python", "libzlib", "python_abi"])
    result = run_cli(["sync", "--config", str(config)])
    assert result.code == 0, result.stderr
    assert "depend on packages" not in result.stderr
    rows = _status(config)
    assert rows["noarch"]["dangling_dependencies"] == rows["linux-64"]["dangling_dependencies"] == 0
    document = yaml.safe_load(config.read_text())
    document["channels"]["up"]["subdirs"] = ["noarch"]  # no platform: python is nowhere
    config.write_text(yaml.safe_dump(document))
    narrowed = run_cli(["sync", "--config", str(config)])
    assert "up/noarch: 1 record depends on packages this channel does not hold (python)" in (
        narrowed.stderr
    )
