"""End to end: a real loopback upstream, real package files, the tree py-rattler installs from."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard

from mirror.reports import Outcome
from tests.conftest import Site, run_cli
from tests.support.builder import PackageSpec, build_channel
from tests.support.rattler_client import solve_and_install
from tests.support.served import served_bytes, served_paths
from tests.support.upstream_server import UpstreamServer


def repodata(site: Site, subdir: str = "linux-64") -> dict:
    return json.loads((site.subdir("up", subdir) / "repodata.json").read_bytes())


def without_indexed_timestamps(document: bytes) -> dict:
    data = json.loads(document)
    for group in ("packages", "packages.conda"):
        for record in data[group].values():
            record.pop("indexed_timestamp", None)
    return data


def published_names(site: Site, subdir: str = "linux-64") -> set[str]:
    data = repodata(site, subdir)
    return set(data["packages"]) | set(data["packages.conda"])


def test_sync_mirrors_every_file_and_rattler_installs_from_the_tree(
    server: UpstreamServer, make_site, tmp_path: Path
) -> None:
    site = make_site(server.url)
    report = site.sync()
    assert report.ok, [r.summary() for r in report.subdirs]

    # .conda preferred: zlib-1.3.1 .tar.bz2 is not mirrored
    assert site.packages("up", "linux-64") == {
        "zlib-1.2.13-h0_0.conda",
        "zlib-1.3.1-h0_0.conda",
        "libfoo-1.9-h1_0.conda",
        "libfoo-1.10-h1_0.conda",
        "libfoo-1.10-h1_1.conda",
        "tool-0.5-h2_0.conda",
    }
    assert published_names(site) == site.packages("up", "linux-64")
    assert published_names(site, "noarch") == site.packages("up", "noarch")

    prefix = tmp_path / "env"
    names = solve_and_install(
        [site.root.joinpath("up").as_uri()],
        ["pyapp"],
        ["linux-64", "noarch"],
        prefix,
        tmp_path / "cache",
    )
    assert names == {"pyapp", "libfoo", "zlib", "appdata"}
    assert (prefix / "share" / "pyapp" / "2.0.txt").exists()
    assert (prefix / "share" / "libfoo" / "1.10.txt").exists()


def test_second_sync_transfers_no_package_and_parses_no_repodata(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url)
    assert site.sync().ok
    mtimes = {p: p.stat().st_mtime_ns for p in served_paths(site.root)}
    server.clear_log()

    report = site.sync()

    assert report.ok
    assert {r.outcome for r in report.subdirs} == {Outcome.UNCHANGED}
    assert server.count("*.conda") == 0 and server.count("*.tar.bz2") == 0
    assert server.count("*repodata.json*", status=200) == 0
    assert server.count("*repodata.json.zst", status=304) == 2
    assert {p: p.stat().st_mtime_ns for p in served_paths(site.root)} == mtimes


def test_published_repodata_keeps_upstream_records_verbatim_and_zst_matches_json(
    tmp_path: Path, make_site
) -> None:
    up = tmp_path / "patched"
    channel = build_channel(
        up,
        [PackageSpec("a", "1.0", subdir="linux-64", build="h_0")],
        top_level={"signatures": {"x": 1}, "future_key": [1, 2]},
    )
    # patch the upstream record the way conda-forge's hotfixes do: it no longer equals the
    # package's own index.json, and carries keys we do not know
    record = channel["linux-64"]["a-1.0-h_0.conda"]
    record["depends"] = ["patched-dep >=2"]
    record["x_unknown"] = {"nested": True}
    from tests.support.builder import write_repodata

    write_repodata(
        up,
        "linux-64",
        {"a-1.0-h_0.conda": record},
        top_level={
            "signatures": {"x": 1},
            "future_key": [1, 2],
            "info": {"base_url": "https://elsewhere.example/ch/linux-64"},
            "repodata_version": 2,
        },
    )
    site = make_site(up.as_uri())
    assert site.sync().ok

    data = repodata(site)
    published = dict(data["packages.conda"]["a-1.0-h_0.conda"])
    # CEP-47: the time the file first entered our index is added; nothing else changes
    assert abs(published.pop("indexed_timestamp") / 1000 - time.time()) < 60
    assert published == record
    assert data["signatures"] == {"x": 1} and data["future_key"] == [1, 2]
    assert data["info"] == {"subdir": "linux-64"}  # base_url dropped: files are local now
    assert data["repodata_version"] == 1
    raw_json = (site.subdir("up", "linux-64") / "repodata.json").read_bytes()
    zst = (site.subdir("up", "linux-64") / "repodata.json.zst").read_bytes()
    assert zstandard.frame_content_size(zst) == len(raw_json)
    assert zstandard.ZstdDecompressor().decompress(zst) == raw_json
    assert (
        json.loads((site.subdir("up", "noarch") / "repodata.json").read_bytes())["packages.conda"]
        == {}
    )


def test_filters_apply_in_a_real_sync_and_prune_removes_what_is_no_longer_selected(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url, licenses={"deny": ["GPL*"]}, keep_latest=1)
    assert site.sync().ok
    assert site.packages("up", "linux-64") == {
        "zlib-1.3.1-h0_0.conda",
        "libfoo-1.10-h1_0.conda",
        "libfoo-1.10-h1_1.conda",
    }
    # widen keep_latest: the older versions arrive; narrow again: they are pruned
    site2 = make_site(
        server.url, licenses={"deny": ["GPL*"]}, keep_latest=2, top={"max_delete_fraction": 0.5}
    )
    assert site2.sync().ok
    assert "libfoo-1.9-h1_0.conda" in site2.packages()
    site3 = make_site(
        server.url, licenses={"deny": ["GPL*"]}, keep_latest=1, top={"max_delete_fraction": 0.5}
    )
    report = site3.sync(subdirs=("linux-64",))
    assert report.ok
    assert report.subdirs[0].deleted_files == 2
    assert site3.packages() == {
        "zlib-1.3.1-h0_0.conda",
        "libfoo-1.10-h1_0.conda",
        "libfoo-1.10-h1_1.conda",
    }
    assert published_names(site3) == site3.packages()


def test_mass_deletion_guard_keeps_the_tree_when_upstream_suddenly_lists_nothing(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url)
    assert site.sync().ok
    before = site.packages()
    before_repodata = (site.subdir("up", "linux-64") / "repodata.json").read_bytes()
    # served twice: over plain http a body must arrive identically twice to be believed
    server.add_fault("/linux-64/repodata.json.zst", "empty_repodata", count=2)

    report = site.sync(subdirs=("linux-64",))

    assert not report.ok
    (sub,) = report.subdirs
    assert sub.outcome == "guarded" and "would delete 6 of 6" in (sub.message or "")
    assert site.packages() == before
    assert (site.subdir("up", "linux-64") / "repodata.json").read_bytes() == before_repodata

    # and the next run, with upstream healthy again, is clean
    assert site.sync(subdirs=("linux-64",)).ok


def test_http_500_then_success_is_retried_and_published(server: UpstreamServer, make_site) -> None:
    server.add_fault("/linux-64/libfoo-1.9-h1_0.conda", "500", count=2)
    server.add_fault("/linux-64/repodata.json.zst", "503")
    site = make_site(server.url)
    report = site.sync()
    assert report.ok
    linux = report.subdirs[0]
    assert linux.retries.get("http_500") == 2 and linux.retries.get("http_503") == 1
    assert "libfoo-1.9-h1_0.conda" in published_names(site)


@pytest.mark.parametrize("kind", ["truncate", "corrupt", "wrong_length", "reset"])
def test_a_damaged_transfer_is_retried_and_never_published(
    server: UpstreamServer, make_site, kind: str
) -> None:
    server.add_fault("/linux-64/zlib-1.3.1-h0_0.conda", kind, count=1)
    site = make_site(server.url)
    assert site.sync().ok
    upstream_bytes = (server.root / "linux-64" / "zlib-1.3.1-h0_0.conda").read_bytes()
    assert (site.subdir("up", "linux-64") / "zlib-1.3.1-h0_0.conda").read_bytes() == upstream_bytes


def test_a_file_that_stays_corrupt_is_reported_and_left_out_of_repodata(
    server: UpstreamServer, make_site
) -> None:
    server.add_fault("/linux-64/zlib-1.3.1-h0_0.conda", "corrupt", count=100)
    site = make_site(server.url, retries=2)
    report = site.sync()

    assert not report.ok
    linux = report.subdirs[0]
    assert linux.outcome == Outcome.FAILED
    assert [f.filename for f in linux.failures] == ["zlib-1.3.1-h0_0.conda"]
    assert linux.failures[0].reason == "hash_mismatch"
    assert "zlib-1.3.1-h0_0.conda" in (linux.message or "")
    assert "zlib-1.3.1-h0_0.conda" not in site.packages()
    assert "zlib-1.3.1-h0_0.conda" not in published_names(site)
    assert not [p for p in site.subdir("up", "linux-64").iterdir() if p.name.startswith(".")]
    # libfoo 1.10 needs zlib >=1.3 which is missing: the others are still published
    assert "libfoo-1.9-h1_0.conda" in published_names(site)

    # once upstream serves it correctly, the next run fetches it (no 304 short-cut)
    server.clear_faults()
    report = site.sync()
    assert report.ok
    assert "zlib-1.3.1-h0_0.conda" in published_names(site)


def test_upstream_replacing_a_file_under_the_same_name_is_fetched_again(
    tmp_path: Path, make_site
) -> None:
    up = tmp_path / "up"
    build_channel(up, [PackageSpec("a", "1.0", subdir="linux-64", build="h_0")])
    site = make_site(up.as_uri())
    assert site.sync().ok
    build_channel(
        up,
        [
            PackageSpec(
                "a", "1.0", subdir="linux-64", build="h_0", files={"share/a/new.txt": b"rebuilt\n"}
            )
        ],
    )
    guarded = site.sync()  # 1 of 1 published file: past the mass-replacement guard
    assert guarded.subdirs[0].outcome == "guarded" and not guarded.ok
    report = site.sync(allow_mass_replace=True)
    assert report.ok and report.subdirs[0].downloaded_files == 1
    assert (site.subdir("up", "linux-64") / "a-1.0-h_0.conda").read_bytes() == (
        up / "linux-64" / "a-1.0-h_0.conda"
    ).read_bytes()


def test_files_already_in_the_tree_are_hashed_not_downloaded(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url)
    assert site.sync().ok
    # lose the state database (e.g. a rebuilt machine with the tree on a share)
    for path in site.state.iterdir():
        path.unlink()
    server.clear_log()
    report = site.sync()
    assert report.ok
    assert server.count("*.conda") == 0
    assert sum(r.verified_files for r in report.subdirs) == 8


def test_temp_files_left_by_an_interrupted_run_are_cleaned(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url)
    assert site.sync().ok
    leftover = site.subdir("up", "linux-64") / ".mirror-deadbeef.tmp"
    leftover.write_bytes(b"half a package")
    server.add_fault("/linux-64/repodata.json.zst", "404")  # force a real run, not a 304
    site.sync()
    assert not leftover.exists()


def test_missing_zst_falls_back_to_json_and_is_remembered(tmp_path: Path, make_site) -> None:
    up = tmp_path / "up"
    build_channel(up, [PackageSpec("a", "1.0", subdir="linux-64", build="h_0")], write_zst=False)
    with UpstreamServer(up) as srv:
        site = make_site(srv.url)
        assert site.sync().ok
        assert srv.count("*repodata.json.zst", status=404) == 2
        srv.clear_log()
        assert site.sync().ok
        assert srv.count("*repodata.json.zst") == 0  # not asked again for a while
        assert srv.count("*/repodata.json", status=304) == 2


def test_dry_run_changes_nothing_and_reports_sizes(server: UpstreamServer, make_site) -> None:
    site = make_site(server.url)
    report = site.sync(dry_run=True)
    assert report.ok
    linux = report.subdirs[0]
    assert linux.planned_download_files == 6
    assert linux.planned_download_bytes == sum(
        (server.root / "linux-64" / n).stat().st_size
        for n in (
            "zlib-1.2.13-h0_0.conda",
            "zlib-1.3.1-h0_0.conda",
            "libfoo-1.9-h1_0.conda",
            "libfoo-1.10-h1_0.conda",
            "libfoo-1.10-h1_1.conda",
            "tool-0.5-h2_0.conda",
        )
    )
    assert "would download 6 files" in linux.summary()
    assert not site.root.exists()


def test_refuses_to_start_when_the_files_do_not_fit(server: UpstreamServer, make_site) -> None:
    site = make_site(server.url, top={"free_space_margin": "100000TB"})
    report = site.sync()
    assert not report.ok
    assert "free" in (report.subdirs[0].message or "")
    assert site.packages() == set()


def test_local_upstream_and_relative_paths(tmp_path: Path) -> None:
    up = tmp_path / "cfgdir" / "channel"
    build_channel(up, [PackageSpec("a", "1.0")])
    (tmp_path / "cfgdir" / "mirror.yaml").write_text(
        "root: out/tree\nstate_dir: out/state\nchannels:\n  local:\n"
        "    upstream: channel\n    subdirs: [noarch]\n"
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        from mirror.config import load_config
        from mirror.sync.run import SyncOptions, run_sync

        assert run_sync(load_config(tmp_path / "cfgdir" / "mirror.yaml"), SyncOptions()).ok
    finally:
        os.chdir(cwd)
    assert (tmp_path / "cfgdir" / "out" / "tree" / "local" / "noarch" / "a-1.0-0.conda").exists()


def test_a_record_outside_the_selection_that_upstream_lists_is_never_requested(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url, include=["zlib >=1.3"])
    assert site.sync().ok
    assert site.packages() == {"zlib-1.3.1-h0_0.conda"}
    assert server.count("*libfoo*") == 0
    assert site.packages("up", "noarch") == set()
    assert repodata(site, "noarch")["packages.conda"] == {}


def test_repodata_result_is_the_same_over_http_and_file(
    server: UpstreamServer, make_site, tmp_path: Path
) -> None:
    over_http = make_site(server.url)
    assert over_http.sync().ok
    http_bytes = (over_http.subdir("up", "linux-64") / "repodata.json").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    from tests.conftest import write_config

    over_file = Site(
        other,
        write_config(other, {"up": {"upstream": server.root.as_uri(), "subdirs": ["linux-64"]}}),
    )
    assert over_file.sync().ok
    file_bytes = (over_file.subdir("up", "linux-64") / "repodata.json").read_bytes()
    assert without_indexed_timestamps(file_bytes) == without_indexed_timestamps(http_bytes)


def test_outcome_ok_reports_counts(server: UpstreamServer, make_site) -> None:
    report = make_site(server.url).sync()
    linux, noarch = report.subdirs
    assert (linux.outcome, linux.selected, linux.downloaded_files) == (Outcome.OK, 6, 6)
    assert (noarch.selected, noarch.downloaded_files) == (2, 2)
    assert linux.downloaded_bytes == sum(
        p.stat().st_size for p in (server.root / "linux-64").glob("*.conda")
    )


def test_hostile_upstream_records_are_refused_by_name_and_nothing_lands_outside(
    tmp_path: Path, make_site, caplog: pytest.LogCaptureFixture
) -> None:
    up = tmp_path / "evil"
    channel = build_channel(up, [PackageSpec("good", "1.0", subdir="linux-64")])
    good = channel["linux-64"]["good-1.0-0.conda"]
    hostile = {
        "../../etc/x.conda": {**good, "name": "x"},
        "/tmp/abs-1-0.conda": good,
        "sub/dir-1-0.conda": good,
        "nul\x00-1-0.conda": good,
        "lies-1.0-0.conda": good,  # says it is good-1.0-0
        "notapackage.txt": good,
    }
    from tests.support.builder import write_repodata

    write_repodata(up, "linux-64", {**channel["linux-64"]}, write_zst=False)
    doc = json.loads((up / "linux-64" / "repodata.json").read_bytes())
    doc["packages.conda"].update(hostile)
    (up / "linux-64" / "repodata.json").write_text(json.dumps(doc))
    site = make_site(up.as_uri())

    report = site.sync(subdirs=("linux-64",))

    assert report.ok
    (linux,) = report.subdirs
    assert sorted(r.filename for r in linux.refused) == sorted(
        name.encode("unicode_escape").decode() for name in hostile
    )
    assert "refused upstream record ../../etc/x.conda" in caplog.text
    assert published_names(site) == {"good-1.0-0.conda"}
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith(("evil/", "site/")) for p in written), written
    assert not (tmp_path.parent / "etc").exists()


def test_upstream_serving_something_that_is_not_json_leaves_the_tree_untouched(
    server: UpstreamServer, make_site
) -> None:
    site = make_site(server.url)
    assert site.sync().ok
    before = served_bytes(site.root)
    server.add_fault("/linux-64/repodata.json.zst", "not_json", count=20)  # beyond the retries
    report = site.sync(subdirs=("linux-64",))
    assert not report.ok
    assert "corrupt zstd data" in (report.subdirs[0].message or "")
    assert report.subdirs[0].retries == {"corrupt": 4}
    server.clear_faults()
    server.add_fault("/linux-64/repodata.json.zst", "404")
    server.add_fault("/linux-64/repodata.json", "not_json", count=20)
    report = site.sync(subdirs=("linux-64",))
    assert "not valid repodata JSON" in (report.subdirs[0].message or "")
    assert report.subdirs[0].retries == {"invalid_repodata": 4}
    assert served_bytes(site.root) == before


def test_an_https_upstream_is_verified_against_the_ca_bundle_the_site_names(
    tmp_path: Path, make_site: Any
) -> None:
    """TLS is set up only when an https URL is first asked for (a plain-http no-op never pays
    for loading the CA bundle), and then it verifies: a certificate the trust store does not
    hold is refused; with SSL_CERT_FILE naming it, the sync succeeds."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    build_channel(tmp_path / "up", [PackageSpec("alpha", "1.0")])
    with UpstreamServer(tmp_path / "up", tls=(cert, key)) as server:
        assert server.url.startswith("https://")
        site = make_site(server.url, subdirs=["noarch"], retries=0)
        command = ["sync", "--config", str(site.config_path)]
        refused = run_cli(command, env={"SSL_CERT_FILE": ""})
        assert refused.code == 1
        assert "certificate" in refused.stderr.lower(), refused.stderr
        trusted = run_cli(command, env={"SSL_CERT_FILE": str(cert)})
        assert trusted.code == 0, trusted.stderr
    assert (site.root / "up" / "noarch" / "alpha-1.0-0.conda").exists()
