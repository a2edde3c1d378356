"""The per-host concurrency controller: it grows while throughput grows, gives back what buys
nothing, halves once per generation when the upstream pushes back, and stays within its cap.

Scenarios run the pure controller against a simulated upstream (a request takes the
upstream's round trip, longer once more requests are in flight than it serves at once), on a
simulated clock: no threads, no sleeping."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.core.concurrency import Aimd

ROUND_TRIP_S = 0.05


@dataclass
class SimulatedUpstream:
    """Each request takes `round_trip_s`, stretched in proportion once more than `serves`
    are in flight; above `sheds` in flight it answers 503 at once instead."""

    serves: int | None = None
    sheds: int | None = None
    round_trip_s: float = ROUND_TRIP_S
    answered_503: int = 0
    answered: int = 0
    limits: list[int] = field(default_factory=list)  # the limit after each answer

    def run(self, control: Aimd, requests: int) -> tuple[Aimd, float]:
        """Send `requests` requests, as many at once as the controller allows; the controller
        and the simulated seconds it took."""
        now = 0.0
        in_flight: list[tuple[float, int, float, bool]] = []  # (end, seq, start, 503)
        sent = seq = 0
        while sent < requests or in_flight:
            while sent < requests and len(in_flight) < control.limit:
                n = len(in_flight) + 1
                shed = self.sheds is not None and n > self.sheds
                took = 0.001 if shed else self.round_trip_s * max(1.0, n / (self.serves or n))
                heapq.heappush(in_flight, (now + took, seq, now, shed))
                sent += 1
                seq += 1
            end, _, start, shed = heapq.heappop(in_flight)
            now = end
            self.answered += 1
            if shed:
                self.answered_503 += 1
                control = control.congested(now, start)
                sent -= 1  # retried
            else:
                control = control.completed(now, start)
            self.limits.append(control.limit)
        return control, now


def test_the_limit_starts_at_workers_and_never_above_the_cap() -> None:
    assert Aimd.starting(4, 32).limit == 4
    assert Aimd.starting(8, 3).limit == 3
    assert Aimd.starting(0, 0).limit == 1
    assert Aimd.starting(20, 32).with_cap(6).limit == 6


def test_a_slow_but_healthy_upstream_drives_the_limit_to_the_cap_within_a_few_round_trips() -> None:
    upstream = SimulatedUpstream()
    control, seconds = upstream.run(Aimd.starting(4, 32), 674)
    assert control.limit == 32
    first_at_cap = upstream.limits.index(32)
    assert first_at_cap < 120  # 4, 8, 16, 32: two windows each
    # 674 requests at 4 at a time would take 8.4 s; most of them ran at the cap
    assert seconds < 674 * ROUND_TRIP_S / 32 + 0.6


def test_the_limit_settles_at_what_the_upstream_serves_at_once() -> None:
    upstream = SimulatedUpstream(serves=8)
    control, _ = upstream.run(Aimd.starting(4, 64), 5000)
    assert 8 <= control.limit <= 10
    later = upstream.limits[2000:]
    assert max(later) <= 10  # probing one above, and taking it back


def test_a_load_shedding_upstream_holds_the_limit_near_its_capacity_with_few_503s() -> None:
    upstream = SimulatedUpstream(sheds=6)
    control, _ = upstream.run(Aimd.starting(4, 64), 3000)
    assert control.limit <= 7
    assert upstream.answered_503 < 0.05 * upstream.answered
    assert max(upstream.limits[1000:]) <= 7


def test_pushback_halves_the_limit_once_per_generation_of_requests() -> None:
    control = Aimd.starting(32, 32)
    control = control.congested(now_s=10.0, started_s=9.9)
    assert control.limit == 16
    # answers to requests sent before that decrease say nothing about 16
    assert control.congested(now_s=10.1, started_s=9.95).limit == 16
    # a request sent at 16 that is pushed back halves again
    assert control.congested(now_s=10.2, started_s=10.05).limit == 8
    assert Aimd.starting(1, 4).congested(1.0, 1.0).limit == 1


def test_after_pushback_the_limit_grows_one_at_a_time() -> None:
    upstream = SimulatedUpstream()
    control = Aimd.starting(32, 32).congested(0.0, 0.0)
    assert control.limit == 16
    control, _ = upstream.run(control, 400)
    steps = {b - a for a, b in zip(upstream.limits, upstream.limits[1:], strict=False)}
    assert steps <= {0, 1}
    assert control.limit > 16


def test_windows_where_demand_did_not_fill_the_slots_are_not_judged() -> None:
    """The tail of a subdir, or a pause between syncs, is not the upstream getting slower:
    one request at a time, each 50 ms, one a second, with 4 slots."""
    control = Aimd.starting(4, 32)
    for i in range(100):
        control = control.completed(now_s=i * 1.0, started_s=i * 1.0 - 0.05)
    assert control.limit == 4


def test_growth_that_buys_nothing_is_taken_back() -> None:
    control = Aimd.starting(4, 32)
    for i in range(8):  # 8 per second at 4
        control = control.completed(now_s=(i + 1) / 8, started_s=0.0)
    assert control.limit == 8
    t = 1.0
    for _ in range(16):  # still 8 per second at 8
        t += 1 / 8
        control = control.completed(now_s=t, started_s=t - 1.0)
    assert control.limit == 4
    assert not control.slow_start


events = st.lists(
    st.tuples(
        st.sampled_from(["done", "done", "done", "pushback"]),
        st.floats(0.0, 0.5),  # time since the previous event
        st.floats(0.0, 2.0),  # how long the request took
    ),
    max_size=300,
)


@settings(derandomize=True, max_examples=200)
@given(start=st.integers(-2, 80), cap=st.integers(-2, 80), events=events)
def test_any_sequence_of_events_keeps_the_limit_between_one_and_the_cap(
    start: int, cap: int, events: list[tuple[str, float, float]]
) -> None:
    control = Aimd.starting(start, cap)
    now = 0.0
    for kind, gap, took in events:
        now += gap
        before = control.limit
        if kind == "done":
            control = control.completed(now, now - took)
            assert control.limit <= 2 * before
        else:
            control = control.congested(now, now - took)
            assert control.limit <= before
        assert 1 <= control.limit <= max(1, cap)
