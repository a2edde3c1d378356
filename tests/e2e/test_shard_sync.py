"""End to end: a filtered channel reads its upstream through CEP-16 shards (only the names its
rules reach), mirrors exactly the tree that reading repodata.json gives, and falls back to
repodata.json whenever the shards cannot be trusted or do not pay."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mirror.config import load_config
from mirror.core.shards import SHARD_INDEX_NAME
from mirror.health.status import collect_status, format_status
from mirror.reports import Outcome, SyncReport
from mirror.service.metrics import MirrorMetrics
from mirror.sync.repodata_source import INDEX_MISSING_RECHECK_S
from mirror.sync.run import SyncOptions, sync, sync_context
from mirror.sync.shard_cache import CACHE_DIR
from tests.conftest import world_specs, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.sharded_upstream import shard_channel
from tests.support.upstream_server import UpstreamServer

NOW = 1_750_000_000.0  # one clock for both paths: indexed_timestamp and created_at match
# upstream hides these; both paths must carry them for the names they read (sorted, as
# conda-index writes them: the shard path can only give them back sorted)
REMOVED = ["libfoo-1.0-h1_0.tar.bz2", "zlib-1.2.11-h0_0.conda"]
UNRELATED = [
    PackageSpec("unrelated", "1.0", build="h_0", subdir="linux-64"),
    PackageSpec("bystander", "2.0", build="0"),
]
INCLUDE = ["libfoo >=1.10", "zlib", "pyapp"]
INDEX_GLOB = f"*/{SHARD_INDEX_NAME}"
SHARD_GLOB = "*/shards/*"


def make_upstream(root: Path, *, shards: bool = True, extra: Sequence[PackageSpec] = ()) -> None:
    build_channel(root, [*world_specs(), *UNRELATED, *extra])
    # `removed` of linux-64 names only: a shard carries its own name's, so what a name no rule
    # reaches hides is not in the shard path's repodata.json (docs/shards.md)
    linux = root / "linux-64" / "repodata.json"
    linux.write_text(json.dumps({**json.loads(linux.read_text()), "removed": REMOVED}))
    shard_channel(root)  # canonical repodata.json (and .zst) first: both paths read the same
    if not shards:
        for index in root.glob(f"*/{SHARD_INDEX_NAME}"):
            index.unlink()


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    root = tmp_path / "upstream"
    make_upstream(root)
    return root


@pytest.fixture
def served(upstream: Path) -> Any:
    with UpstreamServer(upstream) as server:
        yield server


def site(base: Path, url: str, **channel: Any) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    settings = {"upstream": url, "subdirs": ["linux-64", "noarch"], **channel}
    return write_config(base, {"up": settings})


def run(
    config_path: Path, clock: float = NOW, env: dict[str, str] | None = None, **options: Any
) -> SyncReport:
    """A real sync whose clock is `clock` (the tree's timestamps come from it)."""
    with sync_context(load_config(config_path), env=env, write=True) as ctx:
        ctx.clock = lambda: clock
        return sync(ctx, SyncOptions(**options))


def tree_files(base: Path) -> dict[str, bytes]:
    channel = base / "tree" / "up"
    return {  # dotfiles (the channel marker, temp files) are not what clients are served
        str(p.relative_to(channel)): p.read_bytes()
        for p in channel.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def sources(report: SyncReport) -> dict[str, str | None]:
    return {r.subdir: r.repodata_source for r in report.subdirs}


def ok(report: SyncReport) -> SyncReport:
    assert report.ok, [r.summary() for r in report.subdirs] + list(report.problems)
    return report


def test_the_tree_mirrored_through_shards_equals_the_tree_through_repodata_json_byte_for_byte(
    tmp_path: Path, served: UpstreamServer
) -> None:
    through_shards = site(tmp_path / "a", served.url, include=INCLUDE, repodata_source="shards")
    through_full = site(tmp_path / "b", served.url, include=INCLUDE, repodata_source="full")

    report = ok(run(through_shards))
    assert sources(report) == {"linux-64": "shards", "noarch": "shards"}
    assert served.count("*/repodata.json*") == 0  # the records came from shards only
    assert served.count(SHARD_GLOB) == 3  # libfoo, zlib (linux-64), pyapp (noarch): no others
    assert sources(ok(run(through_full))) == {"linux-64": "full", "noarch": "full"}

    shards_tree, full_tree = tree_files(tmp_path / "a"), tree_files(tmp_path / "b")
    assert set(shards_tree) == set(full_tree)
    assert "linux-64/libfoo-1.10-h1_1.conda" in shards_tree
    assert "linux-64/repodata.json.zst" in shards_tree
    assert any(name.startswith("linux-64/shards/") for name in shards_tree)
    assert b"zlib-1.2.11-h0_0.conda" in shards_tree["linux-64/repodata.json"]  # removed kept
    for name, data in full_tree.items():
        assert shards_tree[name] == data, name


def test_auto_reads_shards_when_the_channel_selects_by_name_and_counts_the_bytes(
    tmp_path: Path, served: UpstreamServer
) -> None:
    report = ok(run(site(tmp_path, served.url, include=INCLUDE)))
    assert sources(report) == {"linux-64": "shards", "noarch": "shards"}
    fetched = sum(
        r.body_bytes_sent
        for r in served.requests
        if "repodata_shards" in r.path or "/shards/" in r.path
    )
    assert sum(r.repodata_bytes for r in report.subdirs) == fetched
    assert "via shards" in report.subdirs[0].summary()


def test_a_channel_that_mirrors_everything_reads_repodata_json_and_never_asks_for_the_index(
    tmp_path: Path, served: UpstreamServer
) -> None:
    report = ok(run(site(tmp_path, served.url)))
    assert sources(report) == {"linux-64": "full", "noarch": "full"}
    assert served.count(INDEX_GLOB) == 0 and served.count(SHARD_GLOB) == 0


def test_an_upstream_without_an_index_falls_back_and_is_not_asked_again_until_the_recheck(
    tmp_path: Path,
) -> None:
    root = tmp_path / "upstream"
    make_upstream(root, shards=False)
    with UpstreamServer(root) as server:
        config = site(tmp_path / "site", server.url, include=INCLUDE)
        assert sources(ok(run(config))) == {"linux-64": "full", "noarch": "full"}
        assert server.count(INDEX_GLOB, status=404) == 2

        server.clear_log()
        assert sources(ok(run(config, NOW + 60))) == {"linux-64": "full", "noarch": "full"}
        assert server.count(INDEX_GLOB) == 0  # remembered

        server.clear_log()
        ok(run(config, NOW + INDEX_MISSING_RECHECK_S + 60))
        assert server.count(INDEX_GLOB) == 2  # a day later: asked again


def test_shards_forced_without_an_index_fail_the_subdir_and_say_why(tmp_path: Path) -> None:
    root = tmp_path / "upstream"
    make_upstream(root, shards=False)
    with UpstreamServer(root) as server:
        report = run(site(tmp_path / "site", server.url, include=INCLUDE, repodata_source="shards"))
    assert {r.outcome for r in report.subdirs} == {Outcome.FAILED}
    assert "no shard index" in (report.subdirs[0].message or "")


@pytest.mark.parametrize(("fault", "why"), [("corrupt", "sha256"), ("404", "404")])
def test_a_shard_that_fails_its_hash_or_is_missing_makes_the_subdir_read_repodata_json(
    tmp_path: Path, served: UpstreamServer, fault: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    reference = site(tmp_path / "ref", served.url, include=INCLUDE, repodata_source="full")
    ok(run(reference))
    served.clear_log()
    served.add_fault("/linux-64/shards/*", fault)
    with caplog.at_level(logging.WARNING):
        report = ok(run(site(tmp_path / "site", served.url, include=INCLUDE)))
    assert sources(report) == {"linux-64": "full", "noarch": "shards"}
    assert served.count("/linux-64/repodata.json.zst", status=200) >= 1  # twice: plain http
    assert served.count("/noarch/repodata.json*") == 0
    assert any(
        why in r.getMessage() and "repodata.json instead" in r.getMessage() for r in caplog.records
    )
    assert tree_files(tmp_path / "site") == tree_files(tmp_path / "ref")


def test_a_change_to_a_few_names_fetches_only_the_index_and_their_shards(
    tmp_path: Path, upstream: Path, served: UpstreamServer
) -> None:
    config = site(tmp_path / "site", served.url, include=INCLUDE)
    ok(run(config))
    cache = tmp_path / "site" / "state" / CACHE_DIR / "up" / "linux-64"
    cached_before = {p.name for p in cache.glob("*.msgpack.zst")} - {"index.msgpack.zst"}

    make_upstream(upstream, extra=[PackageSpec("zlib", "1.3.2", build="h0_0", subdir="linux-64")])
    served.clear_log()
    report = ok(run(config, NOW + 60))

    assert served.count("/linux-64/" + SHARD_INDEX_NAME, status=200) == 1
    assert served.count("/noarch/" + SHARD_INDEX_NAME, status=304) == 1
    assert served.count(SHARD_GLOB) == 1  # zlib's new shard; libfoo's and pyapp's are cached
    assert served.count("*/repodata.json*") == 0
    assert [r.match_path for r in served.requests if r.match_path.endswith(".conda")] == [
        "/linux-64/zlib-1.3.2-h0_0.conda"
    ]
    assert "zlib-1.3.2-h0_0.conda" in (tmp_path / "site/tree/up/linux-64/repodata.json").read_text()
    cached_after = {p.name for p in cache.glob("*.msgpack.zst")} - {"index.msgpack.zst"}
    assert len(cached_after) == len(cached_before) == 2
    assert len(cached_after - cached_before) == 1  # zlib's old shard left the cache
    assert report.subdirs[0].repodata_bytes > 0


def test_a_no_op_sync_asks_only_for_the_shard_indexes(
    tmp_path: Path, served: UpstreamServer
) -> None:
    config = site(tmp_path / "site", served.url, include=INCLUDE)
    ok(run(config))
    served.clear_log()
    report = ok(run(config, NOW + 60))
    assert {r.outcome for r in report.subdirs} == {Outcome.UNCHANGED}
    assert [(r.match_path, r.status) for r in served.requests] == [
        ("/linux-64/" + SHARD_INDEX_NAME, 304),
        ("/noarch/" + SHARD_INDEX_NAME, 304),
    ]
    assert [r.repodata_bytes for r in report.subdirs] == [0, 0]


@pytest.mark.parametrize("mode", ["all", "solve"])
def test_a_closure_through_shards_mirrors_the_files_the_full_path_mirrors(
    tmp_path: Path, served: UpstreamServer, mode: str
) -> None:
    settings = {"include": ["tool", "pyapp"], "dependencies": mode}
    through_shards = site(tmp_path / "a", served.url, **settings)
    through_full = site(tmp_path / "b", served.url, **settings, repodata_source="full")
    report = ok(run(through_shards))
    assert sources(report) == {"linux-64": "shards", "noarch": "shards"}
    assert served.count("*/repodata.json*") == 0
    walked = {
        r.match_path.rsplit("/", 1)[-1] for r in served.requests if "/shards/" in r.match_path
    }
    assert len(walked) == 5  # tool, libfoo, zlib; pyapp, appdata: never unrelated, bystander
    ok(run(through_full))
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    assert "linux-64/zlib-1.3.1-h0_0.conda" in tree_files(tmp_path / "a")


def test_a_file_upstream_with_shards_is_read_through_them(tmp_path: Path, upstream: Path) -> None:
    config = site(tmp_path / "site", upstream.as_uri(), include=INCLUDE)
    report = ok(run(config))
    assert sources(report) == {"linux-64": "shards", "noarch": "shards"}
    assert {r.outcome for r in ok(run(config, NOW + 60)).subdirs} == {Outcome.UNCHANGED}


def test_status_and_metrics_say_which_source_each_subdir_used_and_its_bytes(
    tmp_path: Path, served: UpstreamServer
) -> None:
    config_path = site(tmp_path / "site", served.url, include=INCLUDE)
    report = ok(run(config_path))
    rows = {r.subdir: r for r in collect_status(load_config(config_path))}
    linux_bytes = report.subdirs[0].repodata_bytes
    assert (rows["linux-64"].repodata_via, rows["linux-64"].repodata_bytes) == (
        "shards",
        linux_bytes,
    )
    assert rows["linux-64"].repodata_source.endswith("/linux-64/" + SHARD_INDEX_NAME)
    assert "shards" in format_status(list(rows.values()))

    registry = CollectorRegistry()
    MirrorMetrics(registry).record_sync("up", report, 1.0, NOW)
    scraped = generate_latest(registry).decode()
    line = 'conda_mirror_repodata_bytes_total{channel="up",source="shards",subdir="linux-64"}'
    assert f"{line} {float(linux_bytes)}" in scraped


def test_shards_on_another_host_are_fetched_without_the_channel_token(tmp_path: Path) -> None:
    token = "s3cret-bearer-token"
    root, cdn = tmp_path / "up", tmp_path / "cdn-root"
    make_upstream(root)
    with UpstreamServer(root, bearer=token) as origin, UpstreamServer(cdn) as other_host:
        shard_channel(
            root, shards_root=cdn / "cdn", shards_base_url=f"{other_host.url}/cdn/{{subdir}}/"
        )
        config = site(tmp_path / "site", origin.url, include=INCLUDE, token_env="UP_TOKEN")
        report = ok(run(config, env={"UP_TOKEN": token}))
    assert sources(report) == {"linux-64": "shards", "noarch": "shards"}
    assert other_host.count("/cdn/*", status=200) == 3
    assert all("authorization" not in r.headers for r in other_host.requests)
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in origin.requests)
