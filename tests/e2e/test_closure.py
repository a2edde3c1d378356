"""Dependency closure end to end: a layered upstream, include only top-level specs, and real
clients (py-rattler) solving and installing from the tree we produce, offline."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from rattler import BuildString, MatchSpec, PackageRecord

from tests.conftest import Site, run_cli, write_config
from tests.support import rattler_client
from tests.support.builder import PackageSpec, build_channel
from tests.support.layered_channel import PLATFORMS, layered_specs
from tests.support.upstream_server import UpstreamServer

SUBDIRS = [*PLATFORMS, "noarch"]
VARIANTS = [["python 3.11.*"], ["python 3.12.*"]]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("layered") / "upstream"
    build_channel(root, layered_specs(), extra_subdirs=PLATFORMS)
    with UpstreamServer(root) as server:
        yield server


def _site(base: Path, server: UpstreamServer, **channel: Any) -> Site:
    base.mkdir(parents=True, exist_ok=True)
    settings = {"upstream": server.url, "subdirs": SUBDIRS, **channel}
    return Site(base, write_config(base, {"cf": settings}))


def _files(site: Site, subdir: str) -> set[str]:
    return site.packages("cf", subdir)


def _upstream_records(server: UpstreamServer, subdir: str) -> dict[str, dict[str, Any]]:
    doc = json.loads((Path(server.root) / subdir / "repodata.json").read_bytes())
    return {**doc.get("packages", {}), **doc.get("packages.conda", {})}


def test_solve_mode_mirrors_what_each_platform_and_variant_needs_and_it_installs(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    site = _site(
        tmp_path / "site",
        upstream,
        include=["numpy", "requests"],
        dependencies={"mode": "solve", "variants": VARIANTS},
        check=True,
    )
    result = run_cli(["sync", "--config", str(site.config_path)])
    assert result.code == 0, result.stdout + result.stderr

    mirrored = sum(len(_files(site, s)) for s in SUBDIRS)
    upstream_total = sum(len(_upstream_records(upstream, s)) for s in SUBDIRS)
    assert mirrored * 4 < upstream_total, (mirrored, upstream_total)  # far fewer files
    assert not any(n.startswith("unrelated") for s in SUBDIRS for n in _files(site, s))
    for platform in PLATFORMS:
        names = {n.rsplit("-", 2)[0] for n in _files(site, platform)}
        runtime = "libgcc" if platform.startswith("linux") else "llvm-openmp"
        assert {"python", "numpy", "libblas", "libzlib", "openssl", runtime} <= names
    assert {"python_abi", "requests", "urllib3", "idna", "certifi"} <= {
        n.rsplit("-", 2)[0] for n in _files(site, "noarch")
    }

    # real clients, offline, from the tree: every platform and variant solves; linux installs
    channel = (site.root / "cf").as_uri()
    for platform in PLATFORMS:
        for variant in VARIANTS:
            records = rattler_client.solve(
                [channel], ["numpy", "requests", *variant], [platform, "noarch"],
                tmp_path / "cache", virtual_packages=_virtual(platform),
            )  # fmt: skip
            names = {r.name.normalized for r in records}
            assert {"numpy", "requests", "python", "openssl"} <= names
            if platform == "linux-64" and variant == VARIANTS[-1]:
                rattler_client.install(records, tmp_path / "prefix", tmp_path / "cache")
                assert (tmp_path / "prefix" / "conda-meta").is_dir()
    check = run_cli(["check", "--config", str(site.config_path)])
    assert check.code == 0, check.stdout + check.stderr
    assert "solves" in check.stdout


def _virtual(platform: str) -> list[str]:
    return ["__glibc=2.28", "__unix"] if platform.startswith("linux") else ["__osx=13.0", "__unix"]


def test_all_mode_holds_every_record_matching_a_needed_dependency_spec(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    site = _site(tmp_path / "site", upstream, include=["requests"], dependencies="all")
    result = run_cli(["sync", "--config", str(site.config_path)])
    assert result.code == 0, result.stdout + result.stderr

    for platform in PLATFORMS:
        expected = _independent_closure(upstream, platform, "requests")
        got = {(s, f) for s in (platform, "noarch") for f in _files(site, s)}
        assert got == expected


def _independent_closure(server: UpstreamServer, platform: str, root: str) -> set[tuple[str, str]]:
    """The all-mode closure computed directly from upstream's repodata with rattler's matching:
    every record matching a dependency spec of a selected record, transitively."""
    records = {
        (subdir, fn): rec
        for subdir in (platform, "noarch")
        for fn, rec in _upstream_records(server, subdir).items()
    }
    as_rattler = {
        key: PackageRecord(
            name=rec["name"], version=rec["version"], build=BuildString(rec["build"]),
            build_number=rec["build_number"], subdir=rec["subdir"],
        )
        for key, rec in records.items()
    }  # fmt: skip
    selected = {k for k, rec in records.items() if rec["name"] == root}
    queue = deque(selected)
    while queue:
        key = queue.popleft()
        for dep in records[key].get("depends", []):
            if dep.startswith("__"):
                continue
            spec = MatchSpec(dep)
            for other, prec in as_rattler.items():
                if other not in selected and spec.matches(prec):
                    selected.add(other)
                    queue.append(other)
    return selected


def test_an_excluded_dependency_fails_the_sync_naming_the_spec_and_the_rule(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    site = _site(
        tmp_path / "site",
        upstream,
        include=["numpy"],
        exclude=["openssl >=3"],
        subdirs=["linux-64", "noarch"],
        dependencies={"mode": "solve", "variants": [["python 3.12.*"]]},
        check=True,
    )
    result = run_cli(["sync", "--config", str(site.config_path)])
    assert result.code == 1
    out = result.stdout + result.stderr
    assert "openssl-3.4.0-h0_0.conda" in out and "exclude 'openssl >=3'" in out
    assert "python-3.12.2-h0_0_cpython.conda needs 'openssl >=3.3,<4'" in out
    check = run_cli(["check", "--config", str(site.config_path)])
    assert check.code == 1
    assert "openssl >=3.3,<4, for which no candidates were found" in check.stdout


def test_a_channel_resolves_from_another_in_priority_order_and_why_explains_it(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    bio_root = tmp_path / "bio-upstream"
    build_channel(bio_root, [
        PackageSpec("biotool", "1.0", build="pyh_0", noarch="python",
                    depends=("numpy >=2", "biolib", "idna", "python >=3.11")),
        PackageSpec("biolib", "0.5", build="pyh_0", noarch="python", depends=("python",)),
        PackageSpec("idna", "2.0", build="pyh_0", noarch="python"),  # older than cf's 3.10
        PackageSpec("biounrelated", "1.0", build="0"),
    ], extra_subdirs=["linux-64"])  # fmt: skip
    with UpstreamServer(bio_root) as bio:
        base = tmp_path / "site"
        base.mkdir()
        variants = [["python 3.12.*"]]
        config = write_config(base, {
            "bio": {"upstream": bio.url, "subdirs": ["linux-64", "noarch"], "include": ["biotool"],
                    "dependencies": {"mode": "solve", "channels": ["cf"], "variants": variants},
                    "check": True},
            "cf": {"upstream": upstream.url, "subdirs": ["linux-64", "noarch"],
                   "include": ["requests"],
                   "dependencies": {"mode": "solve", "variants": variants}},
        })  # fmt: skip
        site = Site(base, config)
        result = run_cli(["sync", "--config", str(config), "--channel", "bio"])
        assert result.code == 0, result.stdout + result.stderr
        why = run_cli(["why", "numpy", "--config", str(config)])

    bio_files = site.packages("bio", "noarch")
    assert bio_files == {
        "biotool-1.0-pyh_0.conda",
        "biolib-0.5-pyh_0.conda",
        "idna-2.0-pyh_0.conda",
    }
    cf_linux = {n.rsplit("-", 2)[0] for n in site.packages("cf", "linux-64")}
    assert {"numpy", "python", "openssl", "libblas"} <= cf_linux  # pulled in by bio's closure
    assert {"requests", "idna"} <= {n.rsplit("-", 2)[0] for n in site.packages("cf", "noarch")}
    records = rattler_client.solve(
        [(site.root / "bio").as_uri(), (site.root / "cf").as_uri()],
        ["biotool", "python 3.12.*"], ["linux-64", "noarch"], tmp_path / "cache",
        virtual_packages=_virtual("linux-64"),
    )  # fmt: skip
    by_name = {r.name.normalized: r for r in records}
    assert str(by_name["idna"].version) == "2.0"  # strict priority: bio's idna, not cf's newer
    assert why.code == 0, why.stderr
    assert (
        "cf/linux-64/numpy-2.1.3-pycp312h0_0.conda: biotool-1.0-pyh_0.conda needs 'numpy >=2'"
        in why.stdout
    )


def test_configured_virtual_packages_decide_what_solves(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    site = _site(
        tmp_path / "site", upstream, include=["numpy"], subdirs=["linux-64", "noarch"],
        dependencies={"mode": "solve", "virtual_packages": {"linux-64": ["__glibc=2.12"]}},
    )  # fmt: skip
    result = run_cli(["sync", "--config", str(site.config_path)])
    assert result.code == 1
    assert "__glibc >=2.17" in result.stdout + result.stderr


def test_dry_run_counts_what_the_closure_pulls_in(upstream: UpstreamServer, tmp_path: Path) -> None:
    site = _site(tmp_path / "site", upstream, include=["requests"], dependencies="solve")
    result = run_cli(["sync", "--dry-run", "--config", str(site.config_path)])
    assert result.code == 0, result.stderr
    assert "cf/noarch: dry run: 5 selected (4 by dependencies or lockfiles)" in result.stderr
    assert site.packages("cf", "noarch") == set()


def _conda_lock(entries: list[tuple[str, str, dict[str, Any]]]) -> str:
    """A conda-lock.yml (conda-lock's unified format, version 1) pinning these packages."""
    lines = [
        "# This lock file was generated by conda-lock (https://github.com/conda/conda-lock).",
        "version: 1",
        "metadata:",
        "  channels:",
        "  - url: conda-forge",
        "    used_env_vars: []",
        "  platforms:",
        "  - linux-64",
        "  sources:",
        "  - environment.yml",
        "package:",
    ]
    for url, platform, rec in entries:
        lines += [
            f"- name: {rec['name']}",
            f"  version: '{rec['version']}'",
            "  manager: conda",
            f"  platform: {platform}",
            "  dependencies: {}",
            f"  url: {url}",
            "  hash:",
            f"    md5: {rec['md5']}",
            f"    sha256: {rec['sha256']}",
            "  category: main",
            "  optional: false",
        ]
    return "\n".join(lines) + "\n"


def test_lockfiles_are_mirrored_exactly_and_missing_packages_are_reported(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    from rattler import LockChannel, LockFile, LockPlatform

    # a pixi.lock written by py-rattler itself from a real solve against the upstream
    solved = rattler_client.solve(
        [upstream.url], ["requests", "python 3.12.*"], ["linux-64", "noarch"],
        tmp_path / "cache", virtual_packages=_virtual("linux-64"),
    )  # fmt: skip
    lock = LockFile([LockPlatform("linux-64")])
    lock.set_channels("default", [LockChannel(upstream.url)])
    for record in solved:
        lock.add_conda_package("default", LockPlatform("linux-64"), record)
    pixi_lock = tmp_path / "pixi.lock"
    lock.to_path(pixi_lock)
    # a conda-lock.yml pinning one osx-arm64 package, and one that upstream never had
    osx = _upstream_records(upstream, "osx-arm64")["libzlib-1.2.13-h0_5.conda"]
    ghost = {**osx, "name": "ghost", "version": "9.9"}
    conda_lock = tmp_path / "conda-lock.yml"
    conda_lock.write_text(_conda_lock([
        (f"{upstream.url}/osx-arm64/libzlib-1.2.13-h0_5.conda", "osx-arm64", osx),
        (f"{upstream.url}/osx-arm64/ghost-9.9-h0_0.conda", "osx-arm64", ghost),
    ]))  # fmt: skip
    site = _site(tmp_path / "site", upstream, lockfiles=[str(pixi_lock), str(conda_lock)])
    result = run_cli(["sync", "--config", str(site.config_path)])

    assert result.code == 1  # the ghost package is reported, the rest is mirrored
    assert "conda-lock.yml: osx-arm64/ghost-9.9-h0_0.conda: upstream" in result.stderr
    assert "no longer has this package" in result.stderr
    expected = {(r.subdir, r.file_name) for r in solved} | {
        ("osx-arm64", "libzlib-1.2.13-h0_5.conda")
    }
    got = {(s, f) for s in SUBDIRS for f in _files(site, s)}
    assert got == expected  # exactly the lockfiles' packages: nothing more, nothing less
    for subdir, filename in got:  # and the very bytes the lockfiles name
        import hashlib

        data = (site.root / "cf" / subdir / filename).read_bytes()
        assert (
            hashlib.sha256(data).hexdigest()
            == _upstream_records(upstream, subdir)[filename]["sha256"]
        )


def test_the_daemon_runs_the_closure_and_check_and_exports_whether_it_solves(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    from tests.support.daemon_proc import DaemonProcess, free_port, wait_for

    base = tmp_path / "site"
    base.mkdir()
    port = free_port()
    channel = {
        "upstream": upstream.url, "subdirs": ["linux-64", "noarch"], "include": ["numpy"],
        "exclude": ["libblas"], "dependencies": {"mode": "solve"}, "check": True,
        "schedule": {"interval_minutes": 60, "at_start": True},
    }  # fmt: skip
    config = write_config(base, {"cf": channel}, metrics={"listen": f"127.0.0.1:{port}"})
    with DaemonProcess(config, base / "daemon.log", port) as daemon:
        daemon.start()
        wait_for(
            lambda: daemon.metric("conda_mirror_sync_runs_total", channel="cf", outcome="failed")
        )
        assert daemon.metric("conda_mirror_solvable", channel="cf", platform="linux-64") == 0
        assert daemon.metric("conda_mirror_closure_problems", channel="cf") == 1
        status = run_cli(["status", "--config", str(config), "--json"])
    rows = {(r["channel"], r["subdir"]): r for r in json.loads(status.stdout)}
    assert rows[("cf", "linux-64")]["solvable"] is False
    assert "removed by exclude 'libblas'" in (base / "daemon.log").read_text()


def test_a_spec_with_no_candidate_on_one_platform_warns_there_and_the_rest_still_solves(
    tmp_path: Path,
) -> None:
    """A linux-only package in a channel with linux-64 and osx-arm64: osx-arm64 is solved
    without it (numpy and what it needs are mirrored), with a warning for that spec and
    platform that `mirror why` and `mirror status` show; the sync does not fail."""
    root = tmp_path / "upstream"
    linux_only = PackageSpec("linuxtool", "1.0", build="h0_0", subdir="linux-64",
                             depends=("libgcc >=14",))  # fmt: skip
    build_channel(root, [*layered_specs(noise=0), linux_only], extra_subdirs=PLATFORMS)
    with UpstreamServer(root) as server:
        site = _site(
            tmp_path / "site", server, include=["numpy", "linuxtool"],
            dependencies={"mode": "solve", "variants": [["python 3.12.*"]]}, check=True,
        )  # fmt: skip
        result = run_cli(["sync", "--config", str(site.config_path)])
        why = run_cli(["why", "linuxtool", "--config", str(site.config_path)])
    assert result.code == 0, result.stdout + result.stderr
    warning = "'linuxtool' has no candidate for osx-arm64 upstream"
    assert warning in result.stderr
    assert "linuxtool-1.0-h0_0.conda" in _files(site, "linux-64")
    osx = {n.rsplit("-", 2)[0] for n in _files(site, "osx-arm64")}
    assert {"numpy", "python", "openssl", "libblas", "llvm-openmp"} <= osx
    assert why.code == 0, why.stderr
    assert "cf/linux-64/linuxtool-1.0-h0_0.conda: asked for by 'linuxtool'" in why.stdout
    assert f"cf/osx-arm64: {warning}" in why.stdout

    status = run_cli(["status", "--json", "--config", str(site.config_path)])
    rows = {(r["channel"], r["subdir"]): r for r in json.loads(status.stdout)}
    assert [warning in w for w in rows[("cf", "osx-arm64")]["closure_warnings"]] == [True]
    assert rows[("cf", "linux-64")]["closure_warnings"] == []
    assert rows[("cf", "osx-arm64")]["closure_problems"] == []
    assert rows[("cf", "osx-arm64")]["solvable"] is True
    text = run_cli(["status", "--config", str(site.config_path)]).stdout
    assert warning in text
