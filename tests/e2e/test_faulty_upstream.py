"""A faulty upstream: whatever the real loopback server does wrong, nothing bad is published.

Real parts only: tests.support.upstream_server injecting faults on real sockets, real package
files, real syncs (in-process and through the `mirror` CLI), `mirror verify`, py-rattler
installing from the tree, and the Prometheus exposition text of the metrics registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mirror.config import load_config
from mirror.health.repair import run_verify
from mirror.reports import Outcome, SyncReport
from mirror.service.metrics import MirrorMetrics
from mirror.sync.run import SyncOptions, run_sync
from tests.conftest import run_cli, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.rattler_client import solve_and_install
from tests.support.served import served_bytes
from tests.support.upstream_server import FAULT_KINDS, RequestRecord, UpstreamServer

SUBDIRS = ("linux-64", "noarch")
# Every kind but "404": a missing file is an upstream answer, not a fault to ride out.
KINDS = tuple(sorted(FAULT_KINDS - {"404"}))
RATE = 0.30
SEEDS = (1, 2, 3, 4, 32)  # 32: both first repodata answers list nothing
# 9 attempts per transfer: at 30% faults a file fails for good with p ~ 0.27**9 ~ 1e-5.
RETRIES = 8
SLOW_DELAY_S = 0.05
REPODATA = ("repodata.json", "repodata.json.zst")
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")

Channel = dict[str, dict[str, dict[str, Any]]]  # subdir -> filename -> upstream record


def channel_specs(names: int = 50, versions: int = 3) -> list[PackageSpec]:
    """150 small packages, a third noarch, a quarter .tar.bz2; each name depends on the one
    before it (in runs of five), so a solver has something to resolve."""
    specs = []
    for n in range(names):
        name = f"pkg{n:03d}"
        depends = (f"pkg{n - 1:03d} >=1.0",) if n % 5 else ()
        for v in range(versions):
            specs.append(
                PackageSpec(
                    name,
                    f"1.{v}",
                    build="h0_0",
                    subdir="noarch" if n % 3 == 0 else "linux-64",
                    depends=depends,
                    fmt=".tar.bz2" if (n + v) % 4 == 0 else ".conda",
                )
            )
    return specs


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Channel]:
    root = tmp_path_factory.mktemp("faulty") / "upstream"
    return root, build_channel(root, channel_specs())


@pytest.fixture
def faulty_server(upstream: tuple[Path, Channel]) -> Iterator[UpstreamServer]:
    with UpstreamServer(upstream[0], slow_delay=SLOW_DELAY_S) as srv:
        yield srv


def make_config(base: Path, url: str, **top: Any) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    settings = {"upstream": url, "subdirs": list(SUBDIRS)}
    return write_config(base, {"up": settings}, **{"retries": RETRIES, "workers": 4, **top})


def sync(config: Path) -> SyncReport:
    return run_sync(load_config(config), SyncOptions())


# -- what is published ---------------------------------------------------------------------


def published_records(tree: Path, subdir: str) -> dict[str, dict[str, Any]]:
    doc = json.loads((tree / "up" / subdir / "repodata.json").read_bytes())
    records = {**doc["packages"], **doc["packages.conda"]}
    for record in records.values():
        record.pop("indexed_timestamp", None)  # CEP-47: the one key a mirror adds
    return records


def package_files(tree: Path, subdir: str) -> dict[str, bytes]:
    folder = tree / "up" / subdir
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.endswith(PACKAGE_SUFFIXES)}


@dataclass(frozen=True)
class Audit:
    """Everything wrong with a published tree, compared with upstream."""

    bad_files: list[str]  # package files whose bytes are not upstream's
    bad_records: list[str]  # published records that differ from upstream's
    dangling: list[str]  # published records whose file is missing
    missing: list[str]  # upstream files not (yet) published

    @property
    def bad_bytes(self) -> list[str]:
        return self.bad_files + self.bad_records + self.dangling


def audit(tree: Path, channel: Channel) -> Audit:
    bad_files, bad_records, dangling, missing = [], [], [], []
    for subdir in SUBDIRS:
        upstream = channel.get(subdir, {})
        files = package_files(tree, subdir)
        for name, data in files.items():
            want = upstream.get(name)
            if want is None or (len(data), hashlib.sha256(data).hexdigest()) != (
                want["size"],
                want["sha256"],
            ):
                bad_files.append(f"{subdir}/{name}")
        records = published_records(tree, subdir)
        bad_records += [f"{subdir}/{n}" for n, r in records.items() if upstream.get(n) != r]
        dangling += [f"{subdir}/{n}" for n in records if n not in files]
        missing += [f"{subdir}/{n}" for n in upstream if n not in records]
    return Audit(bad_files, bad_records, dangling, sorted(missing))


def verify_problems(config: Path) -> list[str]:
    return [str(p) for p in run_verify(load_config(config)).before.problems]


# -- what the server did, and what the metrics say ------------------------------------------


def is_repodata(record: RequestRecord) -> bool:
    return record.match_path.rsplit("/", 1)[-1] in REPODATA


def injected(server: UpstreamServer) -> list[RequestRecord]:
    return [r for r in server.requests if r.fault is not None]


def expected_reason(record: RequestRecord, channel: Channel) -> str | None:
    """The retry/error reason a fault must be counted under; None for "slow", which only
    delays. Over plain http a repodata body must arrive twice alike, so even a valid but
    different body (an empty repodata) fails that comparison (`unstable_repodata`)."""
    kind = record.fault
    if kind == "slow":
        return None
    fixed = {"500": "http_500", "503": "http_503", "reset": "connection", "truncate": "truncated"}
    if kind == "wrong_length" and not is_repodata(record):
        return "truncated"  # Content-Length says half: the client reads half
    if kind in fixed:
        return fixed[kind]
    if is_repodata(record):
        # a broken zstd stream, broken JSON, or a body unlike its second transfer
        return "repodata_body"
    if kind == "corrupt":
        return "hash_mismatch"
    # not_json, empty_repodata: a 200 whose body is shorter (or longer) than the file
    subdir, name = record.match_path.strip("/").split("/")
    promised = channel[subdir][name]["size"]
    return "truncated" if record.body_bytes_sent < promised else "size_mismatch"


def agreeing_empty_pairs(requests: list[RequestRecord]) -> list[RequestRecord]:
    """Two transfers of one repodata in a row that were both the same empty repodata agree:
    that is an upstream listing nothing, no fault the client can see (the deletion guard, or
    for a fresh subdir an empty channel, is what follows)."""
    out: list[RequestRecord] = []
    last: dict[str, RequestRecord] = {}
    for record in requests:
        if not is_repodata(record):
            continue
        previous = last.get(record.match_path)
        if (
            previous is not None
            and previous not in out
            and previous.fault == record.fault == "empty_repodata"
        ):
            out += [previous, record]
        last[record.match_path] = record
    return out


def scrape(reports: list[SyncReport]) -> dict[str, Counter[str]]:
    """Feed the reports to a fresh registry the way the daemon does; read the exposition text."""
    registry = CollectorRegistry()
    metrics = MirrorMetrics(registry)
    for report in reports:
        metrics.record_sync("up", report, 1.0, 0.0)
    counts: dict[str, Counter[str]] = {"retries": Counter(), "errors": Counter()}
    names = {
        "conda_mirror_download_retries": "retries",
        "conda_mirror_download_errors": "errors",
    }
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if family.name in names and sample.name.endswith("_total") and sample.value:
                counts[names[family.name]][sample.labels["reason"]] += int(sample.value)
    return counts


def counted_by_reason(reports: list[SyncReport]) -> Counter[str]:
    scraped = scrape(reports)
    return scraped["retries"] + scraped["errors"]


def fold_repodata_body_reasons(counted: Counter[str]) -> Counter[str]:
    """A broken repodata body is counted as `corrupt` (zstd), `invalid_repodata` (JSON) or
    `unstable_repodata` (unlike its second transfer), depending on where the damage falls and
    which transfer it hit: all stand for the expected `repodata_body`."""
    folded = Counter(counted)
    for reason in ("corrupt", "invalid_repodata", "unstable_repodata"):
        folded["repodata_body"] += folded.pop(reason, 0)
    return +folded


# -- 1. convergence at a 30% fault rate, with 0 bad bytes ------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sync_through_30_percent_faults_publishes_exactly_upstream_and_no_bad_byte(
    faulty_server: UpstreamServer,
    upstream: tuple[Path, Channel],
    tmp_path: Path,
    seed: int,
) -> None:
    _, channel = upstream
    faulty_server.set_fault_rate(RATE, KINDS, seed)
    config = make_config(tmp_path / "site", faulty_server.url)
    tree = tmp_path / "site" / "tree"

    reports: list[SyncReport] = []
    for _ in range(3):
        seen = len(faulty_server.requests)
        report = sync(config)
        reports.append(report)
        state = audit(tree, channel)
        assert state.bad_bytes == [], [s.summary() for s in report.subdirs]
        if report.ok and not state.missing:
            break
        # A run may only end short when upstream, for one response, listed nothing. With
        # files published, the deletion guard keeps the tree; for a subdir not yet mirrored
        # it is indistinguishable from an empty channel: published as such, exit 0, and the
        # next run (the ETag no longer matches) mirrors it. Every other fault is ridden out.
        run_faults = injected(faulty_server)[seen:]
        assert any(r.fault == "empty_repodata" and is_repodata(r) for r in run_faults)
        assert {s.outcome for s in report.subdirs if not s.ok} <= {Outcome.GUARDED}
    else:
        pytest.fail(f"no convergence in 3 runs: {[s.summary() for s in report.subdirs]}")

    assert verify_problems(config) == []
    faults = injected(faulty_server)
    assert len(faults) >= 20 and {f.fault for f in faults} >= {"500", "503", "reset", "corrupt"}

    # 3. every fault that was a failure is counted once, under the reason of its kind
    agreeing = agreeing_empty_pairs(faulty_server.requests)
    expected = Counter(
        r for f in faults if f not in agreeing and (r := expected_reason(f, channel)) is not None
    )
    counted = fold_repodata_body_reasons(counted_by_reason(reports))
    assert counted == expected

    if seed == SEEDS[0]:
        prefix, cache = tmp_path / "env", tmp_path / "cache"
        names = solve_and_install(
            [(tree / "up").as_uri()], ["pkg004"], list(SUBDIRS), prefix, cache
        )
        assert names == {f"pkg{n:03d}" for n in range(5)}
        assert (prefix / "share" / "pkg004" / "1.2.txt").exists()


def test_upstream_suddenly_listing_nothing_trips_the_deletion_guard_and_deletes_nothing(
    faulty_server: UpstreamServer, upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    config = make_config(tmp_path / "site", faulty_server.url)
    tree = tmp_path / "site" / "tree"
    assert sync(config).ok
    before = served_bytes(tree)
    for subdir in SUBDIRS:
        faulty_server.add_fault(f"/{subdir}/repodata.json.zst", "empty_repodata", count=100)

    result = run_cli(["sync", "--config", str(config)])

    assert result.code == 1
    assert result.stderr.count("would delete") == 2 and "--allow-mass-delete" in result.stderr
    assert served_bytes(tree) == before
    assert audit(tree, upstream[1]).missing == []


def test_a_repodata_that_is_not_json_never_replaces_the_published_one(
    faulty_server: UpstreamServer, upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    config = make_config(tmp_path / "site", faulty_server.url, retries=2)
    tree = tmp_path / "site" / "tree"
    assert sync(config).ok
    before = served_bytes(tree)
    for variant in REPODATA:  # and once for the plain JSON (no .zst upstream)
        for subdir in SUBDIRS:
            if variant == "repodata.json":
                faulty_server.add_fault(f"/{subdir}/repodata.json.zst", "404", count=1)
            faulty_server.add_fault(f"/{subdir}/{variant}", "not_json", count=3)
        report = sync(config)
        assert [s.outcome for s in report.subdirs] == ["failed", "failed"]
        assert all(s.error_reason in ("corrupt", "invalid_repodata") for s in report.subdirs)
        assert served_bytes(tree) == before


def test_a_repodata_damaged_in_transit_is_never_published(tmp_path: Path) -> None:
    # In this channel the server's "corrupt" (middle byte of the .zst flipped) decodes to valid
    # JSON where only pkg006-1.0's md5 differs: no file check could catch it. Over plain http
    # (and without a zstd checksum) the body must arrive twice alike, so it is fetched again.
    channel = build_channel(tmp_path / "upstream", channel_specs(names=13))
    with UpstreamServer(tmp_path / "upstream") as server:
        server.add_fault("/noarch/repodata.json.zst", "corrupt", count=1)
        config = make_config(tmp_path / "site", server.url)
        report = sync(config)
    assert audit(tmp_path / "site" / "tree", channel).bad_bytes == []
    assert report.ok
    noarch = next(s for s in report.subdirs if s.subdir == "noarch")
    assert noarch.retries == {"unstable_repodata": 1}


# -- 2 and 4. persistent faults: exit 1, the files named, the tree intact, then healed -------


def grow(root: Path, channel: Channel) -> list[PackageSpec]:
    """Upstream publishes three new linux-64 packages and one noarch package."""
    new = [
        PackageSpec("fresh-a", "1.0", build="h0_0", subdir="linux-64"),
        PackageSpec("fresh-b", "1.0", build="h0_0", subdir="linux-64"),
        PackageSpec("fresh-c", "1.0", build="h0_0", subdir="linux-64", fmt=".tar.bz2"),
        PackageSpec("fresh-n", "1.0", build="0", subdir="noarch"),
    ]
    channel.clear()
    channel.update(build_channel(root, [*channel_specs(), *new]))
    return new


def test_persistent_faults_exit_1_name_the_files_keep_the_tree_and_heal_on_the_next_run(
    tmp_path: Path,
) -> None:
    root = tmp_path / "upstream"
    channel = build_channel(root, channel_specs())
    with UpstreamServer(root, slow_delay=SLOW_DELAY_S) as server:
        config = make_config(tmp_path / "site", server.url, retries=2)
        tree = tmp_path / "site" / "tree"
        assert run_cli(["sync", "--config", str(config)]).code == 0
        before = served_bytes(tree)
        noarch_before = {p: b for p, b in before.items() if p.parent.name == "noarch"}

        grow(root, channel)
        server.add_fault("/linux-64/fresh-a-1.0-h0_0.conda", "503", count=1000)
        server.add_fault("/linux-64/fresh-b-1.0-h0_0.conda", "corrupt", count=1000)
        server.add_fault("/noarch/repodata.json.zst", "not_json", count=1000)
        result = run_cli(["sync", "--config", str(config)])

        assert result.code == 1
        out = result.stdout + result.stderr
        assert re.search(r"not mirrored: \S*/linux-64/fresh-a-1.0-h0_0.conda: .*HTTP 503", out)
        assert re.search(r"not mirrored: \S*/linux-64/fresh-b-1.0-h0_0.conda: checksum", out)
        assert re.search(r"up/noarch: failed.*noarch/repodata.json.zst: corrupt zstd", out)
        # what was published is still there, byte for byte; the noarch index did not move
        after = served_bytes(tree)
        assert {p: after.get(p) for p in before if p.name.endswith(PACKAGE_SUFFIXES)} == {
            p: b for p, b in before.items() if p.name.endswith(PACKAGE_SUFFIXES)
        }
        assert {p: b for p, b in after.items() if p.parent.name == "noarch"} == noarch_before
        state = audit(tree, channel)
        assert state.bad_bytes == []
        assert state.missing == [
            "linux-64/fresh-a-1.0-h0_0.conda",
            "linux-64/fresh-b-1.0-h0_0.conda",
            "noarch/fresh-n-1.0-0.conda",
        ]
        assert verify_problems(config) == []

        server.clear_faults()
        server.clear_log()
        result = run_cli(["sync", "--config", str(config)])

        assert result.code == 0, result.stderr
        fetched = [r.match_path for r in server.requests if r.match_path.endswith(PACKAGE_SUFFIXES)]
        assert sorted(fetched) == [
            "/linux-64/fresh-a-1.0-h0_0.conda",
            "/linux-64/fresh-b-1.0-h0_0.conda",
            "/noarch/fresh-n-1.0-0.conda",
        ]
        final = audit(tree, channel)
        assert final.bad_bytes == [] and final.missing == []
        assert verify_problems(config) == []


def test_a_sync_that_gave_up_on_files_exits_1_names_each_and_the_next_run_fetches_them(
    faulty_server: UpstreamServer, upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    _, channel = upstream
    # no retries at all, and only packages fail: many files are given up on
    faulty_server.set_fault_rate(RATE, KINDS, seed=7, path_glob="*[a2]")  # .conda, .tar.bz2
    config = make_config(tmp_path / "site", faulty_server.url, retries=0)
    tree = tmp_path / "site" / "tree"

    result = run_cli(["sync", "--config", str(config)])

    assert result.code == 1
    state = audit(tree, channel)
    assert state.bad_bytes == [] and len(state.missing) > 5
    named = set(re.findall(r"not mirrored: \S*?/((?:linux-64|noarch)/[^/\s:]+): ", result.stderr))
    assert named == set(state.missing)

    faulty_server.clear_faults()
    faulty_server.clear_log()
    assert run_cli(["sync", "--config", str(config)]).code == 0
    fetched = [r.match_path.lstrip("/") for r in faulty_server.requests]
    assert sorted(f for f in fetched if f.endswith(PACKAGE_SUFFIXES)) == state.missing
    assert audit(tree, channel).missing == []


# -- 3. every fault counted by reason --------------------------------------------------------


def test_each_fault_kind_is_counted_under_its_reason_in_the_metrics(
    faulty_server: UpstreamServer, upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    _, channel = upstream
    files = sorted(channel["linux-64"])
    package_kinds = [k for k in KINDS if k != "slow"]
    for name, kind in zip(files, package_kinds, strict=False):
        faulty_server.add_fault(f"/linux-64/{name}", kind, count=2)  # twice: retried twice
    faulty_server.add_fault(f"/linux-64/{files[-1]}", "503", count=1000)  # never succeeds
    faulty_server.add_fault("/linux-64/repodata.json.zst", "reset", count=1)
    faulty_server.add_fault("/noarch/repodata.json.zst", "500", count=1000)  # never succeeds
    config = make_config(tmp_path / "site", faulty_server.url, retries=3)

    report = sync(config)

    scraped = scrape([report])
    faults = injected(faulty_server)
    assert Counter(f.fault for f in faults) == Counter(
        {**{k: 2 for k in package_kinds}, "503": 2 + 4, "reset": 2 + 1, "500": 2 + 4}
    )
    # the file that always failed: 3 retries, then 1 error; the noarch repodata likewise
    assert scraped["errors"] == Counter({"http_503": 1, "http_500": 1})
    expected = Counter(expected_reason(f, channel) for f in faults)
    assert fold_repodata_body_reasons(scraped["retries"] + scraped["errors"]) == expected
    assert expected == Counter(
        {
            "http_500": 2 + 4,
            "http_503": 2 + 4,
            "connection": 2 + 1,
            "truncated": 2 * 4,  # truncate, wrong_length, and the two short 200 bodies
            "hash_mismatch": 2,
        }
    )
