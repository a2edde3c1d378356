"""The writer lease's record and the judgement whether it still binds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.adapters.objectstore.lease import LeaseTiming
from mirror.adapters.objectstore.lease_record import (
    LeaseRecord,
    Standing,
    new_record,
    show_time,
    standing,
)
from mirror.errors import ConfigError

T0 = datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
TTL = timedelta(seconds=60)
SKEW = timedelta(seconds=5)


def test_a_record_round_trips_through_json() -> None:
    record = new_record("abc", "host-1", 42, T0, TTL)
    assert LeaseRecord.from_json(record.to_json()) == record
    released = record.release(T0 + timedelta(seconds=3))
    assert LeaseRecord.from_json(released.to_json()) == released


def test_times_are_whole_seconds_and_never_shorten_the_lease() -> None:
    record = new_record("abc", "h", 1, T0, TTL)
    assert record.acquired_at == datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert record.expires_at == datetime(2030, 1, 1, 12, 1, 1, tzinfo=UTC)
    assert record.expires_at >= T0 + TTL


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"[]", b'{"holder": "x"}', b'{"holder":"x","host":"h","pid":"p"}']
)
def test_bytes_that_are_no_lease_read_as_none(data: bytes) -> None:
    assert LeaseRecord.from_json(data) is None


def test_a_valid_lease_of_another_holder_binds_until_its_expiry_plus_skew() -> None:
    record = new_record("them", "h", 1, T0, TTL)
    assert standing(record, "us", T0, SKEW) == Standing.HELD
    assert standing(record, "us", record.expires_at + SKEW - timedelta(seconds=1), SKEW) == (
        Standing.HELD
    )
    assert standing(record, "us", record.expires_at + SKEW, SKEW) == Standing.EXPIRED


def test_our_own_and_released_leases() -> None:
    record = new_record("us", "h", 1, T0, TTL)
    assert standing(record, "us", T0, SKEW) == Standing.OURS
    assert standing(record.release(T0), "them", T0, SKEW) == Standing.FREE
    assert standing(record.release(T0), "us", T0, SKEW) == Standing.FREE


def test_an_unreadable_lease_binds_for_a_ttl_after_it_was_written() -> None:
    assert standing(None, "us", T0, SKEW, written_at=T0, ttl=TTL) == Standing.HELD
    later = T0 + TTL + SKEW
    assert standing(None, "us", later, SKEW, written_at=T0, ttl=TTL) == Standing.EXPIRED


@settings(derandomize=True, max_examples=200)
@given(st.integers(min_value=-300, max_value=300), st.integers(min_value=10, max_value=600))
def test_a_holder_never_counts_on_more_time_than_others_grant_it(offset_s: int, ttl_s: int) -> None:
    """The holder keeps it for ttl - skew after sending; others respect it for ttl + skew
    after the written time: with clocks within the skew, their windows never overlap."""
    written = new_record("them", "h", 1, T0, timedelta(seconds=ttl_s))
    now = T0 + timedelta(seconds=offset_s)
    holder_believes = offset_s < ttl_s - SKEW.total_seconds()
    if holder_believes:
        assert standing(written, "us", now, SKEW) == Standing.HELD


def test_times_are_shown_in_utc() -> None:
    assert show_time(T0) == "2030-01-01 12:00:00 UTC"


def test_renewing_more_rarely_than_the_ttl_allows_is_refused() -> None:
    with pytest.raises(ConfigError):
        LeaseTiming(ttl_s=60, renew_every_s=58, clock_skew_s=5)
    LeaseTiming(ttl_s=60, renew_every_s=20, clock_skew_s=5)
