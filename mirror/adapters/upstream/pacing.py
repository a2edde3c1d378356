"""Per-host request slots shared by a whole process: an adaptive limit, a cap, Retry-After pauses.

Every request to an http upstream takes a slot of its host first and gives it back once its
body has been read (or it failed). The number of slots follows core.concurrency's AIMD
controller within the host's cap; a Retry-After answer pauses the host: no request to it
starts before the pause is over, whichever thread or channel sends it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mirror.core.concurrency import Aimd
from mirror.errors import Interrupted

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a waiting request looks at the stop signal
IDLE_S = 2.0  # a host with nothing in flight for this long was idle, not slow


@dataclass(frozen=True)
class HostPolicy:
    """What the channels using a host configured for it."""

    start: int  # transfer.workers: the limit a host starts with
    cap: int  # transfer.max_connections_per_host


@dataclass
class _Host:
    control: Aimd
    wakeup: threading.Condition
    in_flight: int = 0
    paused_until: float = 0.0  # on the monotonic clock
    peak: int = 0
    last_done_s: float = 0.0


@dataclass
class Slot:
    """One request's hold on a slot; the request says how it ended before leaving."""

    host: str
    started_s: float
    outcome: str = "failed"  # "done" | "congested" | "failed" (neither: not judged)
    pause_s: float | None = None

    def done(self) -> None:
        self.outcome = "done"

    def congested(self, pause_s: float | None = None) -> None:
        self.outcome = "congested"
        self.pause_s = pause_s


@dataclass
class HostPacer:
    """Thread-safe; one per http client (so one per process), shared by every channel."""

    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hosts: dict[str, _Host] = field(default_factory=dict)

    @contextlib.contextmanager
    def slot(self, host: str, policy: HostPolicy, stop: threading.Event) -> Iterator[Slot]:
        """Wait for a free slot of `host` (Interrupted on a stop request), hold it while the
        body runs, then feed the outcome the body set on the slot to the controller."""
        taken = self._take(host, policy, stop)
        try:
            yield taken
        finally:
            self._give_back(taken)

    def limit(self, host: str) -> int | None:
        with self._lock:
            state = self._hosts.get(host)
            return None if state is None else state.control.limit

    def peak(self, host: str) -> int:
        """The most requests that were ever in flight to `host` at once."""
        with self._lock:
            state = self._hosts.get(host)
            return 0 if state is None else state.peak

    def _state(self, host: str, policy: HostPolicy) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = _Host(Aimd.starting(policy.start, policy.cap), threading.Condition(self._lock))
            self._hosts[host] = state
        elif policy.cap < state.control.cap:  # several channels, one host: the lowest cap holds
            state.control = state.control.with_cap(policy.cap)
        return state

    def _take(self, host: str, policy: HostPolicy, stop: threading.Event) -> Slot:
        with self._lock:
            state = self._state(host, policy)
            while True:
                if stop.is_set():
                    raise Interrupted("stop requested")
                now = self.clock()
                if state.paused_until > now:
                    state.wakeup.wait(min(POLL_S, state.paused_until - now))
                elif state.in_flight >= state.control.limit:
                    state.wakeup.wait(POLL_S)
                else:
                    break
            if state.in_flight == 0 and now - state.last_done_s > IDLE_S:
                state.control = state.control.rested()
            state.in_flight += 1
            state.peak = max(state.peak, state.in_flight)
            return Slot(host, now)

    def _give_back(self, slot: Slot) -> None:
        with self._lock:
            state = self._hosts[slot.host]
            state.in_flight -= 1
            now = self.clock()
            state.last_done_s = now
            before = state.control.limit
            if slot.outcome == "done":
                state.control = state.control.completed(now, slot.started_s)
            elif slot.outcome == "congested":
                state.control = state.control.congested(now, slot.started_s)
            if slot.pause_s is not None and now + slot.pause_s > state.paused_until:
                state.paused_until = now + slot.pause_s
                log.info("%s asks to wait %.1f s (Retry-After); pausing requests to it", *(
                    slot.host, slot.pause_s))  # fmt: skip
            if state.control.limit != before:
                log.debug(
                    "%s: %d requests at once (was %d)", slot.host, state.control.limit, before
                )
            # one freed slot wakes one waiter; a grown limit wakes as many as it added
            state.wakeup.notify(max(1, state.control.limit - state.in_flight))
