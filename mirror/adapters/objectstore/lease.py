"""One writer per tree across hosts: a lease object in the bucket, taken with conditional PUTs.

Acquire: read `<tree>/.mirror-lease.json`; none there -> PUT If-None-Match: *; another
holder's, still valid -> LockBusyError naming its host, pid and expiry; expired (its holder
died) -> PUT If-Match: <its ETag>, so that of two hosts taking it over at once exactly one
wins. Renew: PUT If-Match: <our last ETag> (412: someone took it over -> LeaseLostError).
Release: PUT If-Match of a record marked released, so it is freed only if still ours; it
is not deleted, since S3-compatible stores differ on conditional DELETE and an unconditional
one could remove a successor's fresh lease.

The holder trusts its own monotonic clock: it counts the lease as held until `ttl - skew`
after it sent the last successful write; other hosts count it as held until `skew` after the
expiry written in it. Host clocks must agree within `skew` (NTP).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from mirror.adapters.objectstore.bucket import Bucket
from mirror.adapters.objectstore.lease_record import (
    LEASE_KEY,
    LeaseRecord,
    Standing,
    new_record,
    show_time,
    standing,
)
from mirror.errors import (
    ConfigError,
    LeaseLostError,
    LockBusyError,
    StoreConflictError,
    StoreError,
    StoreMissingError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    ttl_s: float = 60.0
    renew_every_s: float = 20.0
    clock_skew_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.ttl_s - self.clock_skew_s:
            raise ConfigError(
                "lease timing: renew_every_s must be positive and below ttl_s - clock_skew_s, "
                "or the lease would lapse between renewals"
            )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Lease:
    """The writer lease of the tree at `bucket`'s prefix. `with Lease(bucket) as lease:`
    acquires it, keeps it renewed in a thread and releases it; call `lease.check()` before
    each publishing step."""

    def __init__(
        self,
        bucket: Bucket,
        *,
        timing: LeaseTiming | None = None,
        key: str = LEASE_KEY,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        self.timing = timing or LeaseTiming()
        self.key = key
        self.holder = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._record: LeaseRecord | None = None
        self._etag: str | None = None
        self._held_until = 0.0  # on the monotonic clock
        self._lost: str | None = None
        self._keeper: LeaseKeeper | None = None

    @property
    def url(self) -> str:
        return self.bucket.url_of(self.key)

    # -- the protocol -----------------------------------------------------------------------

    def acquire(self, *, successor_of: str | None = None) -> LeaseRecord:
        """Take the lease or raise LockBusyError saying who holds it and until when.

        `successor_of`: the holder id of a writer known to be gone (the last run of this
        host's state directory, whose lock the caller now holds): its lease, if still
        there, is taken over at once instead of after it expires."""
        ttl, skew = self._ttl(), timedelta(seconds=self.timing.clock_skew_s)
        for _ in range(3):  # lost races only: each round reads the lease again
            found = self._read()
            started = self._monotonic()
            mine = new_record(self.holder, self.host, self.pid, self._clock(), ttl)
            if found is None:
                etag = self._try_put(mine, create_only=True)
            else:
                record, stat = found
                judged = standing(
                    record, self.holder, self._clock(), skew, written_at=stat.last_modified, ttl=ttl
                )
                if judged == Standing.HELD and self._predecessor(record, successor_of):
                    log.warning(
                        "taking over the writer lease %s of %s: the last run of this state "
                        "directory, which ended without giving it back (killed?)",
                        self.url,
                        record.describe() if record else "?",
                    )
                elif judged == Standing.HELD:
                    raise LockBusyError(self._busy_message(record, stat.last_modified + ttl))
                if judged == Standing.EXPIRED and record is not None:
                    log.warning(
                        "taking over the expired writer lease %s of %s (expired %s)",
                        self.url,
                        record.describe(),
                        show_time(record.expires_at),
                    )
                etag = self._try_put(mine, if_match=stat.etag)
            if etag is not None:
                self._won(mine, etag, started)
                return mine
        raise LockBusyError(
            f"the writer lease {self.url} keeps changing hands: other writers are starting at "
            "the same time; try again in a minute"
        )

    def renew(self) -> LeaseRecord:
        """Extend the lease; LeaseLostError if another holder has taken it over."""
        with self._lock:
            record, etag = self._record, self._etag
        if record is None or etag is None:
            raise LeaseLostError(self._lost or f"the writer lease {self.url} is not held")
        started = self._monotonic()
        renewed = record.renewed(self._clock(), self._ttl())
        try:
            new_etag = self.bucket.put_bytes(self.key, renewed.to_json(), if_match=etag)
        except StoreConflictError:
            self._lose(
                f"the writer lease {self.url} was taken over{self._now_held_by()}: "
                "this process is no longer the tree's writer and stops writing"
            )
            raise LeaseLostError(self._lost or "") from None
        self._won(renewed, new_etag, started)
        return renewed

    def release(self) -> None:
        """Give the lease up if it is still ours (a conditional write of a released record)."""
        self.stop_renewing()
        with self._lock:
            record, etag = self._record, self._etag
            self._record, self._etag, self._held_until = None, None, 0.0
        if record is None or etag is None:
            return
        try:
            self.bucket.put_bytes(self.key, record.release(self._clock()).to_json(), if_match=etag)
        except StoreConflictError:
            log.warning("the writer lease %s was no longer ours when released", self.url)
        except StoreError as exc:  # not fatal: the lease frees itself when it expires
            log.warning(
                "could not release the writer lease (it frees itself at %s): %s",
                show_time(record.expires_at),
                exc,
            )

    def holds(self) -> bool:
        """True while the lease is ours and was renewed recently enough to still bind."""
        with self._lock:
            return (
                self._lost is None
                and self._etag is not None
                and (self._monotonic() < self._held_until)
            )

    def check(self) -> None:
        """Raise LeaseLostError unless holds(): call it before each publishing step."""
        if self.holds():
            return
        with self._lock:
            reason, held = self._lost, self._etag is not None
        if reason is None and not held:
            reason = f"the writer lease {self.url} is not held by this process"
        raise LeaseLostError(
            reason
            or f"the writer lease {self.url} could not be renewed within "
            f"{self.timing.ttl_s - self.timing.clock_skew_s:.0f} s, so another host may take "
            "it over: this process stops writing; check the connection to the bucket"
        )

    # -- keeping it -------------------------------------------------------------------------

    def keep_renewed(self, on_lost: Callable[[LeaseLostError], None] | None = None) -> LeaseKeeper:
        """Start renewing every `renew_every_s` in a thread (stopped by release())."""
        self.stop_renewing()
        self._keeper = LeaseKeeper(self, on_lost=on_lost)
        self._keeper.start()
        return self._keeper

    def stop_renewing(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.stop()

    def renew_soon(self) -> None:
        """Have the keeper renew now rather than at its next tick: a writer refused a
        conditional write learns at once whether another host took the tree over. (Renewing
        from the caller's thread instead could race the keeper's own renewal, and the loser
        of that race would wrongly count the lease as lost.)"""
        keeper = self._keeper
        if keeper is not None:
            keeper.wake()

    def __enter__(self) -> Lease:
        self.acquire()
        self.keep_renewed()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- helpers ----------------------------------------------------------------------------

    def _predecessor(self, record: LeaseRecord | None, successor_of: str | None) -> bool:
        return (
            record is not None
            and successor_of is not None
            and record.holder == successor_of
            and record.host == self.host
        )

    def _ttl(self) -> timedelta:
        return timedelta(seconds=self.timing.ttl_s)

    def _read(self) -> tuple[LeaseRecord | None, _Seen] | None:
        try:
            data, stat = self.bucket.get_object(self.key)
        except StoreMissingError:
            return None
        return LeaseRecord.from_json(data), _Seen(stat.etag, stat.last_modified)

    def _try_put(
        self, record: LeaseRecord, *, create_only: bool = False, if_match: str | None = None
    ) -> str | None:
        try:
            return self.bucket.put_bytes(
                self.key, record.to_json(), create_only=create_only, if_match=if_match
            )
        except StoreConflictError:
            return None  # another writer was quicker: read again

    def _won(self, record: LeaseRecord, etag: str, started: float) -> None:
        with self._lock:
            self._record, self._etag, self._lost = record, etag, None
            self._held_until = started + self.timing.ttl_s - self.timing.clock_skew_s

    def _lose(self, reason: str) -> None:
        with self._lock:
            self._lost, self._etag, self._held_until = reason, None, 0.0

    def _now_held_by(self) -> str:
        try:
            found = self._read()
        except StoreError:
            return ""
        record = found[0] if found else None
        return f" by {record.describe()}" if record and not record.released else ""

    def _busy_message(self, record: LeaseRecord | None, unreadable_until: datetime) -> str:
        if record is None:
            who, until = "a writer whose lease cannot be read", unreadable_until
        else:
            who, until = record.describe(), record.expires_at
        return (
            f"another mirror writer holds the tree {self.bucket.location.url}: {who}, lease "
            f"{self.url} valid until {show_time(until)}; wait for it to finish (if that host "
            "is gone, the lease frees itself then)"
        )


@dataclass(frozen=True, slots=True)
class _Seen:
    etag: str
    last_modified: datetime


class LeaseKeeper:
    """A daemon thread renewing a lease until stopped or lost. A renewal that fails for a
    passing reason is tried again at the next tick; once the lease lapses, check() fails."""

    def __init__(
        self, lease: Lease, *, on_lost: Callable[[LeaseLostError], None] | None = None
    ) -> None:
        self.lease = lease
        self.stopped = threading.Event()
        self._woken = threading.Event()
        self._on_lost = on_lost
        self._thread = threading.Thread(
            target=self._run, name=f"lease-renewal {lease.url}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self._woken.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def wake(self) -> None:
        """Renew now (then every renew_every_s again)."""
        self._woken.set()

    def _run(self) -> None:
        while True:
            self._woken.wait(self.lease.timing.renew_every_s)
            self._woken.clear()
            if self.stopped.is_set():
                return
            try:
                self.lease.renew()
            except LeaseLostError as exc:
                log.error("%s", exc)
                if self._on_lost is not None:
                    self._on_lost(exc)
                return
            except StoreError as exc:
                log.warning("renewing the writer lease failed, will try again: %s", exc)
