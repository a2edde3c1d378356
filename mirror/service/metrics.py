"""Prometheus metrics, fed from the reports the use cases return; the registry is passed in.

Labels stay low-cardinality (channel, subdir, outcome, reason, kind, folder_index, mode): never
file names or URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from itertools import pairwise

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from mirror import __version__
from mirror.config.model import Schedule
from mirror.core.records import RefusalReason
from mirror.core.watch_modes import USED_MODES, WatchMode
from mirror.reports import DropOutcome, DropResult, Outcome, SyncReport, UpstreamStatus

_DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, float("inf"))
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, float("inf"))
SYNC_OUTCOMES = (Outcome.OK, Outcome.FAILED, Outcome.INTERRUPTED)  # what sync_runs counts
# enough to see the longest gap of any cron that repeats within a year and runs under 5,000
# times before it (every 5 minutes on weekdays: 540 a week); about 13 us a run
_CRON_HORIZON = timedelta(days=400)
_CRON_MAX_RUNS = 5_000


class MirrorMetrics:
    """Every metric the daemon exports, on the registry it is given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.build_info = self._gauge(
            "conda_mirror_build_info", "Version of mirror running.", ("version",)
        )
        self.build_info.labels(__version__).set(1)
        # process_start_time_seconds: the staleness alert needs it for a channel that has not
        # succeeded since the daemon (re)started
        ProcessCollector(registry=registry)
        self._declare_sync_metrics()
        self._declare_fetch_metrics()
        self._declare_publish_metrics()
        self._declare_drop_metrics()
        self._declare_export_metrics()

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, doc, labels, registry=self._registry)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
        return Gauge(name, doc, labels, registry=self._registry)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self._registry)

    def _declare_sync_metrics(self) -> None:
        self.sync_runs = self._counter(
            "conda_mirror_sync_runs_total",
            "Sync runs of a channel by outcome.",
            ("channel", "outcome"),
        )
        self.sync_duration = self._histogram(
            "conda_mirror_sync_duration_seconds",
            "Wall time of a channel's sync run.",
            ("channel",),
            _DURATION_BUCKETS,
        )
        self.schedule_interval = self._gauge(
            "conda_mirror_schedule_interval_seconds",
            "Longest expected wait between two scheduled syncs of a channel, jitter included.",
            ("channel",),
        )
        self.last_success = self._gauge(
            "conda_mirror_last_success_timestamp_seconds",
            "When a channel's sync last completed with everything selected published.",
            ("channel",),
        )
        self.downloaded_packages = self._counter(
            "conda_mirror_downloaded_packages_total",
            "Package files downloaded and verified.",
            ("channel",),
        )
        self.downloaded_bytes = self._counter(
            "conda_mirror_downloaded_bytes_total",
            "Bytes of verified package files downloaded.",
            ("channel",),
        )
        self.download_errors = self._counter(
            "conda_mirror_download_errors_total",
            "Files (or repodata) that could not be mirrored after all retries, by reason.",
            ("channel", "reason"),
        )
        self.download_retries = self._counter(
            "conda_mirror_download_retries_total",
            "Retried transfers by the fault that caused them.",
            ("channel", "reason"),
        )
        self.refused_records = self._counter(
            "conda_mirror_refused_records_total",
            "Upstream records refused by the record gate, by reason (what clients could not read).",
            ("channel", "reason"),
        )
        self.closure_problems = self._gauge(
            "conda_mirror_closure_problems",
            "Dependencies or lockfile packages the last sync could not mirror (0 = complete).",
            ("channel",),
        )
        self.solvable = self._gauge(
            "conda_mirror_solvable",
            "1 if the channel's specs solved against the published tree at the last check.",
            ("channel", "platform"),
        )

    def _declare_fetch_metrics(self) -> None:
        self.repodata_bytes = self._counter(
            "conda_mirror_repodata_bytes_total",
            "Upstream repodata bytes transferred, by how the records were read (shards, full).",
            ("channel", "subdir", "source"),
        )

    def _declare_publish_metrics(self) -> None:
        self.published_packages = self._gauge(
            "conda_mirror_published_packages",
            "Records in a subdir's published repodata.",
            ("channel", "subdir"),
        )
        self.published_bytes = self._gauge(
            "conda_mirror_published_bytes",
            "Bytes of package files a subdir publishes.",
            ("channel", "subdir"),
        )
        self.dangling_dependencies = self._gauge(
            "conda_mirror_dangling_dependencies",
            "Records a subdir publishes that depend on a package name no record of the channel "
            "provides (the subdir plus noarch), at the last sync.",
            ("channel", "subdir"),
        )
        self.index_duration = self._histogram(
            "conda_mirror_index_duration_seconds",
            "Wall time of publishing a subdir's index files.",
            ("channel",),
            _DURATION_BUCKETS,
        )

    def _declare_drop_metrics(self) -> None:
        self.drop_to_visible = self._histogram(
            "conda_mirror_drop_to_visible_seconds",
            "From a dropped file being complete to it being in the published index.",
            ("channel",),
            _LATENCY_BUCKETS,
        )
        self.drops = self._counter(
            "conda_mirror_drops_total",
            "Files taken from drop folders, by outcome.",
            ("channel", "outcome"),
        )
        self.quarantined = self._counter(
            "conda_mirror_quarantined_files_total",
            "Files moved to quarantine, by reason.",
            ("channel", "reason"),
        )
        self.watch_events = self._counter(
            "conda_mirror_watch_events_total", "File system events seen in drop folders.", ("kind",)
        )
        self.watch_mode = self._gauge(
            "conda_mirror_watch_mode",
            "1 for the mode a drop folder is watched with (events or poll), 0 for the other; "
            "folder_index is its position in the channel's drop_folders.",
            ("channel", "folder_index", "mode"),
        )

    def _declare_export_metrics(self) -> None:
        self.exports = self._counter(
            "conda_mirror_exports_total",
            "Bundles written to the outbox, by outcome.",
            ("channel", "outcome"),
        )
        self.export_bytes = self._gauge(
            "conda_mirror_export_bytes",
            "Size of the channel's last bundle written to the outbox.",
            ("channel",),
        )
        self.export_duration = self._histogram(
            "conda_mirror_export_duration_seconds",
            "Wall time of writing a bundle to the outbox.",
            ("channel",),
            _DURATION_BUCKETS,
        )

    def set_schedules(self, schedules: Mapping[str, Schedule], now: datetime) -> None:
        """The daemon calls this whenever it (re)schedules: channels no longer scheduled lose
        their interval, so nothing alerts on them."""
        self.schedule_interval.clear()
        for channel, schedule in schedules.items():
            gap_s = schedule_gap_s(schedule, now)
            if gap_s is not None:
                self.schedule_interval.labels(channel).set(gap_s)
            # present from the start at 0, so increase() and rate() see a channel's first sync
            for outcome in SYNC_OUTCOMES:
                self.sync_runs.labels(channel, outcome)
            for per_channel in (self.downloaded_packages, self.downloaded_bytes):
                per_channel.labels(channel)
            for reason in RefusalReason:
                self.refused_records.labels(channel, reason)

    def set_watch_modes(self, folders: Iterable[tuple[str, int, WatchMode]]) -> None:
        """(channel, folder index, mode) of every drop folder; folders no longer configured
        lose their series."""
        self.watch_mode.clear()
        for channel, index, used in folders:
            for mode in USED_MODES:
                self.watch_mode.labels(channel, str(index), mode).set(1 if mode == used else 0)

    def record_sync(self, channel: str, report: SyncReport, seconds: float, now: float) -> None:
        outcomes = {s.outcome for s in report.subdirs}
        outcome = (
            Outcome.OK
            if outcomes <= {Outcome.OK, Outcome.UNCHANGED} and report.ok
            else (Outcome.INTERRUPTED if Outcome.INTERRUPTED in outcomes else Outcome.FAILED)
        )
        self.sync_runs.labels(channel, outcome).inc()
        self.sync_duration.labels(channel).observe(seconds)
        if outcome == Outcome.OK:
            self.last_success.labels(channel).set(now)
        self.closure_problems.labels(channel).set(
            sum(1 for p in report.problems if p.startswith(f"{channel}: "))
        )
        for check in report.checks:
            self.solvable.labels(check.channel, check.platform).set(1 if check.ok else 0)
        for dangling in report.dangling:
            self.dangling_dependencies.labels(dangling.channel, dangling.subdir).set(
                dangling.found.records
            )
        for sub in report.subdirs:
            self.downloaded_packages.labels(channel).inc(sub.downloaded_files)
            self.downloaded_bytes.labels(channel).inc(sub.downloaded_bytes)
            for refusal in sub.refused:
                self.refused_records.labels(channel, refusal.reason).inc()
            if sub.repodata_source:
                self.repodata_bytes.labels(channel, sub.subdir, sub.repodata_source).inc(
                    sub.repodata_bytes
                )
            for reason, count in sub.retries.items():
                self.download_retries.labels(channel, reason).inc(count)
            for failure in sub.failures:
                self.download_errors.labels(channel, failure.reason).inc()
            if sub.upstream_status == UpstreamStatus.ERROR:
                # by the fault that made the last attempt fail, as for files and retries
                self.download_errors.labels(channel, sub.error_reason or "repodata").inc()

    def record_export(self, channel: str, size_bytes: int, seconds: float, ok: bool) -> None:
        self.exports.labels(channel, "ok" if ok else "failed").inc()
        self.export_duration.labels(channel).observe(seconds)
        if ok:
            self.export_bytes.labels(channel).set(size_bytes)

    def record_drop(self, channel: str, outcome: DropOutcome) -> None:
        self.drops.labels(channel, outcome.result).inc()
        if outcome.result == DropResult.QUARANTINED:
            self.quarantined.labels(channel, outcome.reason or "unknown").inc()

    def set_published(self, channel: str, subdir: str, packages: int, size_bytes: int) -> None:
        self.published_packages.labels(channel, subdir).set(packages)
        self.published_bytes.labels(channel, subdir).set(size_bytes)


def schedule_gap_s(schedule: Schedule, now: datetime) -> float | None:
    """The longest wait between two runs of a schedule, plus its jitter; None if unknown.

    For a cron this is the longest gap, not the usual one: a weekday cron usually waits a day,
    but an alert at twice that would fire every weekend.
    """
    if schedule.cron:
        gap_s = _longest_cron_gap_s(schedule.cron, now)
    elif schedule.interval_minutes is not None:
        gap_s = schedule.interval_minutes * 60
    else:
        return None
    return None if gap_s is None else gap_s + schedule.jitter_s


def _longest_cron_gap_s(cron: str, now: datetime) -> float | None:
    from apscheduler.triggers.cron import CronTrigger

    # the daemon's trigger, without its jitter (the caller adds the largest jitter instead)
    trigger = CronTrigger.from_crontab(cron, timezone="UTC")
    runs: list[datetime] = []
    when = trigger.get_next_fire_time(None, now)
    while when is not None and when - now <= _CRON_HORIZON and len(runs) < _CRON_MAX_RUNS:
        runs.append(when)
        when = trigger.get_next_fire_time(when, when)
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(runs)]
    return max(gaps, default=None)
