"""`mirror verify [--repair] [--full]` on real trees: each kind of damage found, then repaired."""

from __future__ import annotations

import os
from pathlib import Path

import zstandard

from tests.conftest import Site, run_cli
from tests.support.builder import PackageSpec, build_package
from tests.support.upstream_server import UpstreamServer


def verify(site: Site, *flags: str):
    return run_cli(["verify", "--config", str(site.config_path), *flags])


def synced(server: UpstreamServer, make_site) -> Site:
    site = make_site(server.url)
    assert site.sync().ok
    result = verify(site)
    assert result.code == 0, result.stdout + result.stderr
    return site


def test_a_clean_tree_verifies_and_says_how_much_it_checked(server, make_site) -> None:
    site = synced(server, make_site)
    result = verify(site, "--full")
    assert result.code == 0
    assert "verified 8 records in 2 subdirs (hashed 8)" in result.stderr
    assert "0 problems" in result.stderr


def test_a_corrupt_and_a_missing_mirrored_file_are_found_and_fetched_again(
    server, make_site
) -> None:
    site = synced(server, make_site)
    bad = site.subdir("up", "linux-64") / "zlib-1.3.1-h0_0.conda"
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"\0" * len(good_bytes))  # same size: only the hash tells
    (site.subdir("up", "noarch") / "appdata-2024.1-0.conda").unlink()

    found = verify(site, "--full")
    assert found.code == 1
    assert "up/linux-64/zlib-1.3.1-h0_0.conda: its bytes do not hash" in found.stdout
    assert "up/noarch/appdata-2024.1-0.conda: named by repodata.json but not" in found.stdout

    repaired = verify(site, "--repair", "--full")
    assert repaired.code == 0, repaired.stdout + repaired.stderr
    assert bad.read_bytes() == good_bytes
    assert (site.subdir("up", "noarch") / "appdata-2024.1-0.conda").exists()
    assert verify(site, "--full").code == 0


def test_the_fast_path_trusts_unchanged_stats_and_full_hashes_anyway(server, make_site) -> None:
    site = synced(server, make_site)
    path = site.subdir("up", "linux-64") / "libfoo-1.9-h1_0.conda"
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # bit rot keeps size and mtime
    assert verify(site).code == 0
    assert "libfoo-1.9-h1_0.conda: its bytes do not hash" in verify(site, "--full").stdout


def test_index_files_that_disagree_are_found_and_republished(server, make_site) -> None:
    site = synced(server, make_site)
    linux = site.subdir("up", "linux-64")
    (linux / "repodata.json.zst").write_bytes(zstandard.ZstdCompressor().compress(b"{}"))
    shard = next((linux / "shards").iterdir())
    shard.write_bytes(shard.read_bytes()[:-3] + b"xyz")
    (linux / ".mirror-0123.tmp").write_bytes(b"partial")
    found = verify(site)
    assert found.code == 1
    assert "repodata.json.zst: does not hold the same bytes as repodata.json" in found.stdout
    assert f"shards/{shard.name}: its bytes do not hash to its name" in found.stdout
    assert ".mirror-0123.tmp: a temp file an interrupted run left" in found.stdout
    assert verify(site, "--repair").code == 0
    assert verify(site, "--full").code == 0


def test_current_repodata_zst_that_disagrees_with_its_json_is_found_and_republished(
    server, make_site
) -> None:
    site = make_site(server.url, index={"current_repodata": True})
    assert site.sync().ok
    assert verify(site, "--full").code == 0
    linux = site.subdir("up", "linux-64")
    body = (linux / "current_repodata.json").read_bytes()
    assert (
        zstandard.ZstdDecompressor().decompress((linux / "current_repodata.json.zst").read_bytes())
        == body
    )
    (linux / "current_repodata.json.zst").write_bytes(zstandard.ZstdCompressor().compress(b"{}"))
    (site.subdir("up", "noarch") / "current_repodata.json.zst").write_bytes(b"not zstd")
    found = verify(site)
    assert found.code == 1
    assert (
        "up/linux-64/current_repodata.json.zst: does not hold the same bytes as "
        "current_repodata.json" in found.stdout
    )
    assert "up/noarch/current_repodata.json.zst: not valid zstd" in found.stdout
    assert verify(site, "--repair").code == 0
    assert verify(site, "--full").code == 0
    assert (
        zstandard.ZstdDecompressor().decompress((linux / "current_repodata.json.zst").read_bytes())
        == body
    )


def test_unindexed_files_in_a_mirrored_channel_are_quarantined(server, make_site) -> None:
    site = synced(server, make_site)
    build_package(PackageSpec("stray", "1.0", subdir="linux-64"), site.subdir("up", "linux-64"))
    found = verify(site)
    assert "up/linux-64/stray-1.0-0.conda: a package file no index names" in (found.stdout)
    assert verify(site, "--repair").code == 0
    assert not (site.subdir("up", "linux-64") / "stray-1.0-0.conda").exists()
    assert list((site.state / "quarantine" / "up" / "linux-64").glob("stray-1.0-0.conda.reason"))


def test_a_bad_local_file_is_quarantined_and_the_subdir_reindexed(tmp_path: Path) -> None:
    channel = tmp_path / "tree" / "local"
    for spec in (PackageSpec("a", "1.0"), PackageSpec("b", "1.0")):
        build_package(spec, channel / "noarch")
    (tmp_path / "drops").mkdir()
    config = tmp_path / "mirror.yaml"
    config.write_text(
        "root: tree\nstate_dir: state\nchannels:\n  local:\n"
        "    subdirs: [noarch]\n    drop_folders: [drops]\n"
    )
    state = tmp_path / "state"
    assert run_cli(["index", str(channel), "--state-dir", str(state)]).code == 0
    (channel / "noarch" / "b-1.0-0.conda").write_bytes(b"rotten")
    result = run_cli(["verify", "--config", str(config), "--repair"])
    assert result.code == 0, result.stdout + result.stderr
    reasons = list((state / "quarantine" / "local" / "noarch").glob("*.reason"))
    assert [r.name for r in reasons] == ["b-1.0-0.conda.reason"]
    assert run_cli(["verify", "--config", str(config), "--full"]).code == 0
