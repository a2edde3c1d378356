"""Real pixi.lock files written by py-rattler against a real channel (file:// and http)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rattler
from rattler import LockChannel, LockFile, LockPlatform

from mirror.core.lockfiles import Lockfile, parse_lockfile
from mirror.sync.lockfile_pins import read_lockfile
from tests.support.builder import PackageSpec, build_channel
from tests.support.rattler_client import solve
from tests.support.upstream_server import UpstreamServer

WHEEL = (
    "https://files.pythonhosted.org/packages/f9/9b/"
    "335f9764261e915ed497fcdeb11df5dfd6f7bf257d4a6a2a686d80da4d54/"
    "requests-2.32.3-py3-none-any.whl"
)
TOKEN = "tk-0123456789abcdef"


def parse(text: str, source: str = "env/pixi.lock") -> Lockfile:
    return parse_lockfile(text.encode(), source)


@dataclass(frozen=True)
class RealLocks:
    http: Path  # solved from a token-protected HTTP channel
    local: Path  # solved from a file:// channel (rattler writes those packages as paths)
    records: dict[str, list[rattler.RepoDataRecord]]
    server_url: str


def write_lock(path: Path, channel: str, records: dict[str, list[rattler.RepoDataRecord]]) -> Path:
    lock = LockFile([LockPlatform(name) for name in records])
    lock.set_channels("default", [LockChannel(channel)])
    for platform, solved in records.items():
        for record in solved:
            lock.add_conda_package("default", LockPlatform(platform), record)
    lock.add_pypi_package("default", LockPlatform("linux-64"), "requests", "2.32.3", WHEEL)
    path.parent.mkdir(parents=True)
    lock.to_path(path)
    return path


def solve_both(channel: str, cache: Path) -> dict[str, list[rattler.RepoDataRecord]]:
    return {
        platform: solve([channel], ["app"], [platform, "noarch"], cache / platform)
        for platform in ("linux-64", "osx-arm64")
    }


@pytest.fixture(scope="module")
def real_locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealLocks]:
    base = tmp_path_factory.mktemp("locks")
    root = base / "channel"
    build_channel(
        root,
        [
            PackageSpec("dep", "1.0", noarch="generic"),
            PackageSpec("app", "1.0", subdir="linux-64", depends=("dep",)),
            PackageSpec("app", "1.0", subdir="osx-arm64", depends=("dep",), fmt=".tar.bz2"),
        ],
    )
    with UpstreamServer(root, token=TOKEN) as server:
        http_records = solve_both(server.url, base / "cache-http")
        http = write_lock(base / "http" / "pixi.lock", server.url, http_records)
        local_records = solve_both(root.as_uri(), base / "cache-local")
        local = write_lock(base / "local" / "pixi.lock", root.as_uri(), local_records)
        yield RealLocks(http, local, http_records, server.url)


def test_a_pixi_lock_written_by_rattler_lists_each_conda_package_once(
    real_locks: RealLocks,
) -> None:
    lock = read_lockfile(real_locks.http)
    assert lock.kind == "pixi"
    assert lock.path == real_locks.http
    assert lock.skipped == 1  # the wheel
    expected = {r.url: r for solved in real_locks.records.values() for r in solved}
    assert {p.url for p in lock.packages} == set(expected)
    assert len(lock.packages) == 3  # dep (noarch) is shared by both platforms
    for package in lock.packages:
        record = expected[package.url]
        assert package.channel_url == real_locks.server_url
        assert package.subdir == record.subdir
        assert package.filename == record.file_name
        assert package.sha256 == record.sha256.hex()
        assert package.md5 == record.md5.hex()
    platforms = {p.filename: (p.subdir, p.platform) for p in lock.packages}
    assert platforms["app-1.0-0.conda"] == ("linux-64", "linux-64")
    assert platforms["app-1.0-0.tar.bz2"] == ("osx-arm64", "osx-arm64")
    assert platforms["dep-1.0-0.conda"] == ("noarch", "linux-64")


def test_a_pixi_lock_of_a_file_channel_gives_file_urls(real_locks: RealLocks) -> None:
    lock = read_lockfile(real_locks.local)
    channel = real_locks.http.parents[1] / "channel"
    assert {p.channel_url for p in lock.packages} == {channel.as_uri()}
    for package in lock.packages:
        assert package.url == f"{channel.as_uri()}/{package.subdir}/{package.filename}"
        assert Path(package.url.removeprefix("file://")).is_file()
