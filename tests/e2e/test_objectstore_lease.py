"""One writer per tree across hosts: the lease object in a real S3 server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from mirror.adapters.objectstore import LEASE_KEY, Bucket, Lease, LeaseTiming
from mirror.errors import LeaseLostError, LockBusyError
from tests.support.s3_server import S3Bucket

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class Clocks:
    """A wall clock and a monotonic clock that a test moves by hand (no sleeping)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono


def lease_on(bucket: Bucket, clocks: Clocks, host: str, pid: int, **timing: float) -> Lease:
    lease = Lease(
        bucket, timing=LeaseTiming(**timing), clock=clocks.wall, monotonic=clocks.monotonic
    )
    lease.host, lease.pid = host, pid  # as if on another machine
    return lease


def test_a_second_holder_is_refused_and_told_who_holds_it_until_when(s3: S3Bucket) -> None:
    clocks = Clocks()
    first = lease_on(s3.bucket("tree"), clocks, "builder-1", 4242)
    second = lease_on(s3.bucket("tree"), clocks, "builder-2", 777)
    record = first.acquire()
    assert first.holds()
    with pytest.raises(LockBusyError) as caught:
        second.acquire()
    message = str(caught.value)
    assert "host builder-1 (pid 4242)" in message
    assert "valid until 2030-01-01 12:01:00 UTC" in message
    assert f"s3://{s3.name}/tree" in message
    assert record.expires_at == T0 + timedelta(seconds=60)
    assert not second.holds()


def test_the_lease_object_is_the_documented_json_under_the_tree(s3: S3Bucket) -> None:
    clocks = Clocks()
    lease = lease_on(s3.bucket("tree"), clocks, "builder-1", 4242)
    lease.acquire()
    document = json.loads(s3.bucket("tree").get_bytes(LEASE_KEY))
    assert document == {
        "holder": lease.holder,
        "host": "builder-1",
        "pid": 4242,
        "acquired_at": "2030-01-01T12:00:00Z",
        "expires_at": "2030-01-01T12:01:00Z",
        "released": False,
    }
    assert s3.gateway.requests_of("PUT")[0].headers["if-none-match"] == "*"


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew(s3: S3Bucket) -> None:
    old_clock, new_clock = Clocks(), Clocks()
    old = lease_on(s3.bucket("tree"), old_clock, "dead-host", 1)
    old.acquire()
    new_clock.advance(60 + 5 + 1)  # past the expiry and the allowed clock skew
    new = lease_on(s3.bucket("tree"), new_clock, "new-host", 2)
    new.acquire()
    assert new.holds()
    takeover = s3.gateway.requests_of("PUT")[-1]
    assert takeover.headers["if-match"]  # replaced only the expired version
    with pytest.raises(LeaseLostError) as caught:
        old.renew()  # the old holder wakes up
    assert "taken over by host new-host (pid 2)" in str(caught.value)
    assert not old.holds()
    with pytest.raises(LeaseLostError):
        old.check()
    new.renew()  # the new holder is unaffected
    new.check()


def test_a_lease_within_its_clock_skew_margin_still_binds(s3: S3Bucket) -> None:
    old_clock, new_clock = Clocks(), Clocks()
    lease_on(s3.bucket("tree"), old_clock, "slow-clock", 1).acquire()
    new_clock.advance(60 + 4)  # expired by its own words, but within the 5 s skew
    with pytest.raises(LockBusyError):
        lease_on(s3.bucket("tree"), new_clock, "fast-clock", 2).acquire()


def test_of_racing_takers_exactly_one_wins(s3: S3Bucket) -> None:
    for round_number in range(3):
        prefix = f"race{round_number}"
        lease_on(s3.bucket(prefix), Clocks(), "dead-host", 1).acquire()
        late = Clocks()
        late.advance(120)
        takers = [lease_on(s3.bucket(prefix), late, f"taker-{i}", 100 + i) for i in range(4)]
        outcomes = run_together([taker.acquire for taker in takers])
        winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, LockBusyError) for i, o in enumerate(outcomes) if i != winners[0])
        stored = json.loads(s3.bucket(prefix).get_bytes(LEASE_KEY))
        assert stored["host"] == f"taker-{winners[0]}"
        assert takers[winners[0]].holds()


def test_of_racing_first_takers_exactly_one_creates_it(s3: S3Bucket) -> None:
    clocks = Clocks()
    takers = [lease_on(s3.bucket("fresh"), clocks, f"host-{i}", i) for i in range(4)]
    outcomes = run_together([taker.acquire for taker in takers])
    assert sum(outcome is None for outcome in outcomes) == 1, outcomes


def test_release_frees_the_tree_at_once_and_only_if_still_ours(s3: S3Bucket) -> None:
    clocks = Clocks()
    first = lease_on(s3.bucket("tree"), clocks, "h1", 1)
    first.acquire()
    first.release()
    assert not first.holds()
    assert json.loads(s3.bucket("tree").get_bytes(LEASE_KEY))["released"] is True
    second = lease_on(s3.bucket("tree"), clocks, "h2", 2)
    second.acquire()  # no waiting for an expiry
    first.release()  # a second release writes nothing
    assert json.loads(s3.bucket("tree").get_bytes(LEASE_KEY))["host"] == "h2"


def test_releasing_a_lease_taken_over_leaves_the_new_holder_alone(s3: S3Bucket) -> None:
    old_clock, new_clock = Clocks(), Clocks()
    old = lease_on(s3.bucket("tree"), old_clock, "old", 1)
    old.acquire()
    new_clock.advance(120)
    new = lease_on(s3.bucket("tree"), new_clock, "new", 2)
    new.acquire()
    old.release()
    stored = json.loads(s3.bucket("tree").get_bytes(LEASE_KEY))
    assert (stored["host"], stored["released"]) == ("new", False)
    assert new.holds()


def test_a_holder_that_could_not_renew_in_time_stops_holding(s3: S3Bucket) -> None:
    clocks = Clocks()
    lease = lease_on(s3.bucket("tree"), clocks, "h1", 1)
    lease.acquire()
    clocks.advance(54)  # ttl - skew = 55 s of certainty
    lease.check()
    clocks.advance(2)
    assert not lease.holds()
    with pytest.raises(LeaseLostError) as caught:
        lease.check()
    assert "could not be renewed" in str(caught.value)
    lease.renew()  # nobody took it meanwhile: renewing restores it
    lease.check()


def test_an_unreadable_lease_binds_for_a_ttl_after_it_was_written(s3: S3Bucket) -> None:
    s3.bucket("tree").put_bytes(LEASE_KEY, b"not json")
    with pytest.raises(LockBusyError) as caught:
        Lease(s3.bucket("tree")).acquire()
    assert "cannot be read" in str(caught.value)
    long_after = Clocks(datetime.now(UTC) + timedelta(minutes=5))
    lease_on(s3.bucket("tree"), long_after, "h", 1).acquire()


def test_the_keeper_thread_renews_until_released(s3: S3Bucket) -> None:
    timing = {"ttl_s": 3.0, "renew_every_s": 0.2, "clock_skew_s": 1.0}
    lease = Lease(s3.bucket("tree"), timing=LeaseTiming(**timing))
    with lease:
        first = s3.bucket("tree").get_object(LEASE_KEY)[1].etag
        deadline = time.monotonic() + 10
        while s3.bucket("tree").get_object(LEASE_KEY)[1].etag == first:
            assert time.monotonic() < deadline, "never renewed"
            time.sleep(0.05)
        time.sleep(2.5)  # beyond what the first write alone would cover
        lease.check()
    assert not lease.holds()
    assert json.loads(s3.bucket("tree").get_bytes(LEASE_KEY))["released"] is True


def test_the_keeper_tells_the_writer_when_the_lease_is_lost(s3: S3Bucket) -> None:
    timing = LeaseTiming(ttl_s=3.0, renew_every_s=0.2, clock_skew_s=1.0)
    lease = Lease(s3.bucket("tree"), timing=timing)
    lease.acquire()
    lost = threading.Event()
    lease.keep_renewed(on_lost=lambda _: lost.set())
    late = Clocks(datetime.now(UTC) + timedelta(minutes=5))
    lease_on(s3.bucket("tree"), late, "usurper", 9).acquire()
    assert lost.wait(10)
    with pytest.raises(LeaseLostError) as caught:
        lease.check()
    assert "usurper" in str(caught.value)
    lease.release()


def run_together(calls: list[Callable[[], object]]) -> list[BaseException | None]:
    """Start the calls at one instant in threads; each one's exception, or None."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            calls[index]()
        except BaseException as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_a_release_that_cannot_reach_the_bucket_is_not_fatal(s3: S3Bucket) -> None:
    lease = lease_on(s3.bucket("tree"), Clocks(), "h1", 1)
    lease.acquire()
    s3.gateway.fail_randomly(1.0, ["503"])
    lease.release()  # logged; the lease frees itself when it expires
    s3.gateway.heal()
    assert not lease.holds()
    with pytest.raises(LeaseLostError) as caught:
        lease.check()
    assert "not held" in str(caught.value)
