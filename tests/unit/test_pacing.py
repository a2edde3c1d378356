"""The per-host slots of a process: what a request's outcome does to its host's limit, which
cap holds when channels disagree, and that waiting for a slot gives way to a stop request.
(Waiting itself, with real requests and a real clock, is in tests/e2e/test_adaptive_concurrency.)"""

from __future__ import annotations

import contextlib
import threading

import pytest

from mirror.adapters.upstream.pacing import HostPacer, HostPolicy
from mirror.errors import Interrupted

HOST = "https://up.example"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_host_starts_at_workers_and_pushback_halves_it() -> None:
    pacer = HostPacer()
    with pacer.slot(HOST, HostPolicy(start=8, cap=32), threading.Event()) as slot:
        slot.congested()
    assert pacer.limit(HOST) == 4
    assert pacer.limit("https://other.example") is None


def test_hosts_are_paced_apart() -> None:
    pacer = HostPacer()
    stop = threading.Event()
    with pacer.slot(HOST, HostPolicy(8, 32), stop) as slot:
        slot.congested()
    with pacer.slot("https://shards.example", HostPolicy(8, 32), stop) as slot:
        slot.done()
    assert (pacer.limit(HOST), pacer.limit("https://shards.example")) == (4, 8)


def test_when_channels_share_a_host_the_smallest_cap_holds() -> None:
    pacer = HostPacer()
    stop = threading.Event()
    with pacer.slot(HOST, HostPolicy(8, 32), stop) as slot:
        slot.done()
    with pacer.slot(HOST, HostPolicy(8, 3), stop) as slot:
        slot.done()
    with pacer.slot(HOST, HostPolicy(8, 32), stop) as slot:
        slot.done()
    assert pacer.limit(HOST) == 3


def test_slots_in_use_are_counted_and_given_back_whatever_happens() -> None:
    pacer = HostPacer()
    stop = threading.Event()
    policy = HostPolicy(2, 2)
    with pacer.slot(HOST, policy, stop), pacer.slot(HOST, policy, stop):
        assert pacer.peak(HOST) == 2
    with pytest.raises(RuntimeError), pacer.slot(HOST, policy, stop):
        raise RuntimeError("the request failed")
    assert pacer.peak(HOST) == 2
    with pacer.slot(HOST, policy, stop), pacer.slot(HOST, policy, stop):
        pass  # both slots are free again


def test_waiting_for_a_slot_gives_way_to_a_stop_request() -> None:
    pacer = HostPacer()
    stop = threading.Event()
    with pacer.slot(HOST, HostPolicy(1, 1), stop):
        stop.set()
        with pytest.raises(Interrupted), pacer.slot(HOST, HostPolicy(1, 1), stop):
            pass


def test_a_paused_host_gives_way_to_a_stop_request() -> None:
    clock = Clock()
    pacer = HostPacer(clock=clock)
    stop = threading.Event()
    with pacer.slot(HOST, HostPolicy(4, 4), stop) as slot:
        slot.congested(pause_s=3600.0)
    stop.set()
    with pytest.raises(Interrupted), pacer.slot(HOST, HostPolicy(4, 4), stop):
        pass


def test_a_pause_between_syncs_is_not_taken_for_a_slow_upstream() -> None:
    """A window of completions interrupted by an idle hour would measure a few requests an
    hour and take back the last growth: the window restarts instead."""
    clock = Clock()
    pacer = HostPacer(clock=clock)
    stop = threading.Event()
    policy = HostPolicy(start=2, cap=32)

    def at_once(n: int) -> None:
        """n requests sent together, answered 50 ms later."""
        with contextlib.ExitStack() as stack:
            slots = [stack.enter_context(pacer.slot(HOST, policy, stop)) for _ in range(n)]
            clock.now += 0.05
            for slot in slots:
                slot.done()

    at_once(2)
    at_once(2)  # a window at 2: four completions in 0.1 s
    assert pacer.limit(HOST) == 4
    at_once(4)  # half a window at 4 ...
    clock.now += 3600  # ... the sync ends, the next starts an hour later
    at_once(4)
    at_once(4)
    assert pacer.limit(HOST) == 8  # twice the completions per second of 2: worth growing
