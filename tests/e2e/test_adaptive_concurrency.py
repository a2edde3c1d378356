"""Requests at once to an http upstream: more while a slow upstream keeps up, fewer when it
pushes back, never more than the per-host cap, and a Retry-After pauses the host.

Real parts: the loopback upstream server (a fixed delay before every answer, 429/503 with
Retry-After on demand, shedding load above a number of requests in flight), real package
files, in-process syncs, `mirror verify`. What the client did is read from the server's log:
when each request arrived and how many were in flight then."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror.config import load_config
from mirror.health.repair import run_verify
from mirror.reports import SyncReport
from mirror.sync.run import SyncOptions, run_sync
from tests.conftest import write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import RequestRecord, UpstreamServer

PACKAGES = 160
ROUND_TRIP_S = 0.05
SUFFIXES = (".conda", ".tar.bz2")
# a request whose thread had its slot before a 503 came back may reach the server a little
# after the 503 was sent (a busy machine delays threads): it was on its way, not a new request
ON_THEIR_WAY_S = 0.3

Channel = dict[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Channel]:
    root = tmp_path_factory.mktemp("adaptive") / "upstream"
    specs = [
        PackageSpec(
            f"pkg{i // 4:03d}",
            f"1.{i % 4}",
            build="h0_0",
            subdir="linux-64",
            fmt=".tar.bz2" if i % 3 == 0 else ".conda",
        )
        for i in range(PACKAGES)
    ]
    return root, build_channel(root, specs)


@pytest.fixture
def slow_server(upstream: tuple[Path, Channel]) -> Iterator[UpstreamServer]:
    with UpstreamServer(upstream[0], latency_s=ROUND_TRIP_S) as server:
        yield server


def sync(base: Path, url: str, **top: Any) -> tuple[SyncReport, Path]:
    base.mkdir(parents=True, exist_ok=True)
    config = write_config(base, {"up": {"upstream": url, "subdirs": ["linux-64"]}}, **top)
    return run_sync(load_config(config), SyncOptions()), config


def assert_mirrored_and_verified(report: SyncReport, config: Path, channel: Channel) -> None:
    (subdir,) = report.subdirs
    assert subdir.ok, subdir.message
    assert subdir.failures == ()
    tree = config.parent / "tree" / "up" / "linux-64"
    on_disk = {p.name for p in tree.iterdir() if p.name.endswith(SUFFIXES)}
    assert on_disk == set(channel["linux-64"])
    assert run_verify(load_config(config)).before.problems == []


def package_requests(server: UpstreamServer) -> list[RequestRecord]:
    return sorted(
        (r for r in server.requests if r.match_path.endswith(SUFFIXES)), key=lambda r: r.arrived_s
    )


def test_a_slow_but_healthy_upstream_gets_more_requests_at_once_than_workers(
    slow_server: UpstreamServer, upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    report, config = sync(tmp_path, slow_server.url, workers=2)
    assert_mirrored_and_verified(report, config, upstream[1])
    requests = package_requests(slow_server)
    assert requests[0].in_flight <= 2  # it starts at workers
    assert slow_server.peak_in_flight >= 8  # and grows while the upstream keeps up
    assert slow_server.peak_in_flight <= 32  # the default cap
    assert all(r.status == 200 for r in requests)


def test_the_per_host_cap_is_never_exceeded(
    slow_server: UpstreamServer, upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    report, config = sync(tmp_path, slow_server.url, workers=2, max_connections_per_host=5)
    assert_mirrored_and_verified(report, config, upstream[1])
    assert max(r.in_flight for r in slow_server.requests) == 5
    assert slow_server.peak_in_flight == 5


def test_an_upstream_that_sheds_load_gets_fewer_requests_at_once_and_few_refusals(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    """Above 6 requests in flight this upstream answers 503: the client grows past it once,
    halves, and from then on stays near what the upstream takes, so most requests succeed
    the first time; everything still arrives, verified."""
    with UpstreamServer(upstream[0], latency_s=ROUND_TRIP_S, shed_above=6) as server:
        report, config = sync(tmp_path, server.url, workers=4, retries=8)
        requests = package_requests(server)
    assert_mirrored_and_verified(report, config, upstream[1])
    refused = [r for r in requests if r.status == 503]
    assert refused, "the client never reached the upstream's limit: the test shows nothing"
    assert len(refused) <= 0.15 * len(requests)
    second_half = requests[len(requests) // 2 :]
    assert sum(r.in_flight > 6 for r in second_half) <= 0.1 * len(second_half)


def test_a_retry_after_in_seconds_pauses_every_request_to_the_host(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    with UpstreamServer(upstream[0]) as server:
        server.add_refusal("*/pkg010-1.0-h0_0.*", 503, retry_after="2")
        report, config = sync(tmp_path, server.url, workers=4)
        requests = package_requests(server)
    assert_mirrored_and_verified(report, config, upstream[1])
    (refusal,) = [r for r in requests if r.status == 503]
    # requests already on their way when the 503 came back may still arrive; none that were
    # sent after it, until the 2 s have passed
    late = [r for r in requests if refusal.arrived_s + ON_THEIR_WAY_S < r.arrived_s]
    assert late, "nothing was requested after the pause: the test shows nothing"
    assert min(r.arrived_s for r in late) >= refusal.arrived_s + 2.0
    retry = next(r for r in requests if r.arrived_s > refusal.arrived_s and r.path == refusal.path)
    assert retry.arrived_s >= refusal.arrived_s + 2.0
    assert retry.status == 200


def test_a_retry_after_as_an_http_date_is_honoured(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    not_before = time.time() + 2
    date = email.utils.formatdate(not_before, usegmt=True)  # whole seconds: rounds down
    with UpstreamServer(upstream[0]) as server:
        server.add_refusal("*/pkg020-1.1-h0_0.*", 429, retry_after=date)
        report, config = sync(tmp_path, server.url)
        requests = package_requests(server)
    assert_mirrored_and_verified(report, config, upstream[1])
    (refusal,) = [r for r in requests if r.status == 429]
    not_after = int(not_before)  # the date has whole seconds
    retry = next(r for r in requests if r.arrived_s > refusal.arrived_s and r.path == refusal.path)
    assert retry.arrived_s >= not_after
    early = [r for r in requests if refusal.arrived_s + ON_THEIR_WAY_S < r.arrived_s < not_after]
    assert early == []


def test_a_retry_after_longer_than_max_retry_after_s_is_cut_to_it(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    with UpstreamServer(upstream[0]) as server:
        server.add_refusal("*/pkg030-1.2-h0_0.*", 503, retry_after="3600")
        started = time.monotonic()
        report, config = sync(tmp_path, server.url, max_retry_after_s=0.5)
        took = time.monotonic() - started
        requests = package_requests(server)
    assert_mirrored_and_verified(report, config, upstream[1])
    (refusal,) = [r for r in requests if r.status == 503]
    retry = next(r for r in requests if r.arrived_s > refusal.arrived_s and r.path == refusal.path)
    assert retry.arrived_s >= refusal.arrived_s + 0.5
    assert took < 30
