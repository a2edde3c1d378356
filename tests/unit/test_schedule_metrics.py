"""The schedule interval the staleness alert compares a channel's last success against."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from mirror.config.model import Schedule
from mirror.core.records import RefusalReason
from mirror.service.metrics import MirrorMetrics, schedule_gap_s

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
# a Wednesday: a weekday cron's weekend gap is ahead of it, not at its start
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)


def test_an_interval_schedule_waits_its_interval_plus_its_jitter() -> None:
    assert schedule_gap_s(Schedule(interval_minutes=90), NOW) == 90 * 60
    assert schedule_gap_s(Schedule(interval_minutes=90, jitter_s=120), NOW) == 90 * 60 + 120


def test_a_regular_cron_waits_its_period_plus_its_jitter() -> None:
    assert schedule_gap_s(Schedule(cron="0 */6 * * *"), NOW) == 6 * HOUR_S
    assert schedule_gap_s(Schedule(cron="0 */6 * * *", jitter_s=600), NOW) == 6 * HOUR_S + 600


def test_a_weekday_cron_waits_its_longest_gap_so_weekends_do_not_alert() -> None:
    assert schedule_gap_s(Schedule(cron="0 2 * * 1-5"), NOW) == 3 * DAY_S
    assert schedule_gap_s(Schedule(cron="0 9-17 * * 1-5"), NOW) == (24 + 24 + 16) * HOUR_S


def test_a_monthly_cron_waits_its_longest_month() -> None:
    assert schedule_gap_s(Schedule(cron="0 0 1 * *"), NOW) == 31 * DAY_S


def test_a_cron_without_two_runs_within_the_horizon_has_no_interval() -> None:
    # the next 29 February after March 2025 is in 2028
    assert schedule_gap_s(Schedule(cron="0 0 29 2 *"), NOW) is None


def test_set_schedules_exports_each_scheduled_channel_and_forgets_the_others() -> None:
    registry = CollectorRegistry()
    metrics = MirrorMetrics(registry)
    metrics.set_schedules(
        {"cf": Schedule(interval_minutes=60), "main": Schedule(cron="0 2 * * 1-5")}, NOW
    )
    interval = "conda_mirror_schedule_interval_seconds"
    assert registry.get_sample_value(interval, {"channel": "cf"}) == HOUR_S
    assert registry.get_sample_value(interval, {"channel": "main"}) == 3 * DAY_S

    metrics.set_schedules({"main": Schedule(interval_minutes=30)}, NOW)  # a reload drops cf
    assert registry.get_sample_value(interval, {"channel": "cf"}) is None
    assert registry.get_sample_value(interval, {"channel": "main"}) == 30 * 60


def test_a_scheduled_channel_counts_from_zero_so_its_first_sync_shows_in_increase() -> None:
    registry = CollectorRegistry()
    MirrorMetrics(registry).set_schedules({"cf": Schedule(interval_minutes=60)}, NOW)
    for outcome in ("ok", "failed", "interrupted"):
        labels = {"channel": "cf", "outcome": outcome}
        assert registry.get_sample_value("conda_mirror_sync_runs_total", labels) == 0
    for counter in ("downloaded_packages", "downloaded_bytes"):
        value = registry.get_sample_value(f"conda_mirror_{counter}_total", {"channel": "cf"})
        assert value == 0, counter
    for reason in RefusalReason:
        labels = {"channel": "cf", "reason": reason.value}
        assert registry.get_sample_value("conda_mirror_refused_records_total", labels) == 0


def test_the_process_start_time_is_exported_for_the_staleness_alert() -> None:
    registry = CollectorRegistry()
    MirrorMetrics(registry)
    started = registry.get_sample_value("process_start_time_seconds")
    assert started is not None
    assert started > 0
