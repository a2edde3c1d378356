"""What the writer lease object says (JSON), and whether it still binds (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

# a dotfile at the tree's root: clients never fetch it, nginx never serves it
LEASE_KEY = ".mirror-lease.json"
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class Standing(StrEnum):
    """What a would-be writer finds in the lease object."""

    FREE = "free"  # no lease, or one released by its holder
    OURS = "ours"  # written by this very holder
    HELD = "held"  # another holder's, still valid: wait
    EXPIRED = "expired"  # another holder's, past its time (the holder died): may be taken over


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str  # a random id per process and lease: tells two processes on one host apart
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime
    released: bool = False

    def to_json(self) -> bytes:
        document = {
            "holder": self.holder,
            "host": self.host,
            "pid": self.pid,
            "acquired_at": self.acquired_at.strftime(_TIME),
            "expires_at": self.expires_at.strftime(_TIME),
            "released": self.released,
        }
        return json.dumps(document, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> LeaseRecord | None:
        """None for bytes that are not a lease we wrote (damaged or foreign)."""
        try:
            document = json.loads(data)
            return cls(
                holder=str(document["holder"]),
                host=str(document["host"]),
                pid=int(document["pid"]),
                acquired_at=_parse_time(document["acquired_at"]),
                expires_at=_parse_time(document["expires_at"]),
                released=bool(document.get("released", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def renewed(self, now: datetime, ttl: timedelta) -> LeaseRecord:
        return replace(self, expires_at=_whole_seconds(now + ttl))

    def release(self, now: datetime) -> LeaseRecord:
        return replace(self, expires_at=_whole_seconds(now), released=True)

    def describe(self) -> str:
        """`host h1 (pid 42) since 2024-05-01 10:00:00 UTC`, for messages."""
        return f"host {self.host} (pid {self.pid}) since {show_time(self.acquired_at)}"


def new_record(holder: str, host: str, pid: int, now: datetime, ttl: timedelta) -> LeaseRecord:
    start = now.astimezone(UTC).replace(microsecond=0)
    return LeaseRecord(holder, host, pid, start, _whole_seconds(now + ttl))


def standing(
    record: LeaseRecord | None,
    holder: str,
    now: datetime,
    skew: timedelta,
    *,
    written_at: datetime | None = None,
    ttl: timedelta = timedelta(0),
) -> Standing:
    """Judged on this host's clock; an expiry counts only `skew` after the time written in
    the lease, so hosts whose clocks differ by less than `skew` never both hold it. A lease
    that cannot be read binds until `ttl` after it was last written (`written_at`, the
    server's Last-Modified), as if its holder had written a good one then."""
    if record is None:
        if written_at is not None and now < written_at + ttl + skew:
            return Standing.HELD
        return Standing.EXPIRED
    if record.holder == holder and not record.released:
        return Standing.OURS
    if record.released:
        return Standing.FREE
    return Standing.HELD if now < record.expires_at + skew else Standing.EXPIRED


def show_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _whole_seconds(moment: datetime) -> datetime:
    # the JSON keeps whole seconds; rounding up keeps a lease from looking shorter than it is
    rounded = moment.astimezone(UTC).replace(microsecond=0)
    return rounded + timedelta(seconds=1) if rounded < moment else rounded


def _parse_time(text: object) -> datetime:
    return datetime.strptime(str(text), _TIME).replace(tzinfo=UTC)
