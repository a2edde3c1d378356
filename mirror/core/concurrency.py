"""How many requests one upstream host may have in flight: an AIMD controller fed with events.

The limit starts at `transfer.workers` and grows while completed requests per second grow with
it: doubling at first (slow start), then one at a time. A growth step that bought too little
throughput is taken back, so a client stays at the knee of its upstream (a server working
at capacity, a saturated link, our own CPU) instead of piling requests on it. Congestion (429,
503, a Retry-After, a timeout) halves the limit once per generation of requests: answers to
requests sent before the last decrease say nothing about the decreased limit.

Pure: times are passed in (seconds on any monotonic clock), values are immutable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# A window measures one limit over about two rounds of requests (2 x limit completions): long
# enough that one slow file does not decide, short enough to double every ~2 round trips.
WINDOW_ROUNDS = 2
MIN_WINDOW = 4
# Growth must buy at least this share of the throughput a proportional gain would (doubling
# the limit must raise completions/s by 25%, one more slot at 20 by 1.25%), and never less
# than the noise floor below: a step that bought less is taken back.
GAIN_SHARE = 0.25
MIN_GAIN = 0.03
# A window whose slots were busy less than half its time (requests x seconds against limit x
# seconds) measured demand (the end of a subdir, a pause between syncs), not the upstream:
# it is not judged.
SATURATED_SHARE = 0.5
HOLD_WINDOWS = 2  # after taking a step back, stay this many windows before probing again
# Just below the limit that was last pushed back, stay longer before trying it again: a
# server that sheds load above a fixed number of requests then sees few 503s.
CEILING_HOLD_WINDOWS = 8
DECREASE = 0.5


@dataclass(frozen=True)
class Window:
    """Completions counted since `start_s` at one limit."""

    start_s: float
    done: int = 0
    busy_s: float = 0.0  # the time those requests spent in flight within the window


@dataclass(frozen=True)
class Measured:
    limit: int
    per_s: float  # completions per second


@dataclass(frozen=True)
class Aimd:
    """The limit of one host and what it is based on."""

    limit: int
    cap: int
    slow_start: bool = True
    window: Window | None = None  # None until the first request completes
    previous: Measured | None = None  # the last judged window
    hold: int = 0
    decreased_at_s: float = -math.inf
    ceiling: int | None = None  # the limit that was last pushed back

    @classmethod
    def starting(cls, start: int, cap: int) -> Aimd:
        cap = max(1, cap)
        return cls(limit=min(max(1, start), cap), cap=cap)

    def with_cap(self, cap: int) -> Aimd:
        """A new cap (the smallest any user of the host asked for): the limit follows it."""
        cap = max(1, cap)
        return replace(self, cap=cap, limit=min(self.limit, cap))

    def rested(self) -> Aimd:
        """The host was idle (between two syncs): the window being measured spans the pause,
        so it is dropped; the limit and what it was based on stay."""
        return replace(self, window=None)

    def completed(self, now_s: float, started_s: float) -> Aimd:
        """A request sent at `started_s` was answered and read in full."""
        window = self.window or Window(start_s=min(started_s, now_s))
        busy_s = max(0.0, now_s - max(started_s, window.start_s))
        window = replace(window, done=window.done + 1, busy_s=window.busy_s + busy_s)
        if window.done < max(MIN_WINDOW, WINDOW_ROUNDS * self.limit):
            return replace(self, window=window)
        fresh = Window(start_s=now_s)
        elapsed_s = max(now_s - window.start_s, 1e-6)
        if window.busy_s < SATURATED_SHARE * self.limit * elapsed_s:
            return replace(self, window=fresh)
        measured = Measured(self.limit, window.done / elapsed_s)
        return replace(self._judged(measured), window=fresh, previous=measured)

    def congested(self, now_s: float, started_s: float) -> Aimd:
        """The upstream pushed back (429, 503, Retry-After, a timeout) on a request started at
        `started_s`: halve, unless that request was sent before the last decrease."""
        if started_s < self.decreased_at_s:
            return self
        return replace(
            self,
            limit=max(1, math.floor(self.limit * DECREASE)),
            slow_start=False,
            window=Window(start_s=now_s),
            previous=None,
            hold=1,
            decreased_at_s=now_s,
            ceiling=self.limit,
        )

    def _judged(self, measured: Measured) -> Aimd:
        before = self.previous
        if before is not None and not _paid(before, measured):
            # the step bought too little: take it back, stop doubling, wait before probing
            return replace(self, limit=before.limit, slow_start=False, hold=HOLD_WINDOWS)
        if self.hold > 0:
            return replace(self, hold=self.hold - 1)
        return self._grown()

    def _grown(self) -> Aimd:
        step = self.limit if self.slow_start else 1
        limit = min(self.cap, self.limit + step)
        if self.ceiling is not None:
            below = self.ceiling - 1
            if self.limit < below <= limit:  # stop just below it first, for a while
                return replace(self, limit=below, hold=CEILING_HOLD_WINDOWS)
            if limit >= self.ceiling:  # then try it again
                return replace(self, limit=limit, ceiling=None)
        return replace(self, limit=limit)


def _paid(before: Measured, after: Measured) -> bool:
    """Whether a window after growth (or any window that did not grow) is worth its limit."""
    if after.limit <= before.limit:
        return True
    needed = max(MIN_GAIN, GAIN_SHARE * (after.limit - before.limit) / before.limit)
    return after.per_s >= before.per_s * (1 + needed)
