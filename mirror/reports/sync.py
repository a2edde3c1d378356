"""Reports of a sync: per subdir, per file that failed, per solvability check, per run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mirror.core.dangling import Dangling
from mirror.core.records import Refusal
from mirror.reports.outcomes import Outcome, UpstreamStatus


@dataclass(frozen=True)
class FileFailure:
    """A file a sync could not mirror."""

    filename: str
    reason: str  # low-cardinality, for metrics
    message: str  # names the file, never a token


@dataclass(frozen=True)
class SubdirReport:
    channel: str
    subdir: str
    outcome: Outcome
    seconds: float
    upstream_status: UpstreamStatus = UpstreamStatus.FETCHED
    error_reason: str | None = None  # why the repodata could not be had (for metrics)
    selected: int = 0
    pulled_in: int = 0  # selected by the dependency closure or a lockfile, not the filters
    published: int = 0
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    verified_files: int = 0  # files found on disk and hashed instead of downloaded
    unchanged_files: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0
    planned_download_files: int = 0
    planned_download_bytes: int = 0
    repodata_changed: bool = False
    would_guard: bool = False  # --dry-run: a guard would stop the real sync
    failures: tuple[FileFailure, ...] = ()
    refused: tuple[Refusal, ...] = ()
    untracked: tuple[str, ...] = ()
    retries: Mapping[str, int] = field(default_factory=dict)
    message: str | None = None
    repodata_source: str | None = None  # "shards" or "full": how upstream records were read
    repodata_bytes: int = 0  # repodata (index, shards, repodata.json) transferred this run

    @property
    def ok(self) -> bool:
        if self.would_guard:
            return False
        return self.outcome in (Outcome.OK, Outcome.UNCHANGED, Outcome.PLANNED)

    @property
    def label(self) -> str:
        return f"{self.channel}/{self.subdir}"

    def _pulled(self) -> str:
        return f" ({self.pulled_in} by dependencies or lockfiles)" if self.pulled_in else ""

    def summary(self) -> str:
        """The one line a sync logs per channel/subdir."""
        if self.outcome == Outcome.PLANNED:
            return (
                f"{self.label}: dry run: {self.selected} selected{self._pulled()}; would download "
                f"{self.planned_download_files} files ({_mb(self.planned_download_bytes)}), delete "
                f"{self.deleted_files} ({_mb(self.deleted_bytes)}), keep {self.unchanged_files}"
            ) + (f"; {self.message}" if self.message else "")
        text = (
            f"{self.label}: {self.outcome}; {self.selected} selected{self._pulled()}, downloaded "
            f"{self.downloaded_files} files ({_mb(self.downloaded_bytes)}), deleted "
            f"{self.deleted_files}, unchanged {self.unchanged_files}"
        )
        if self.verified_files:
            text += f", re-verified {self.verified_files}"
        if self.failures:
            text += f", failed {len(self.failures)}"
        if self.refused:
            text += f", refused {len(self.refused)} upstream records"
        if self.repodata_source:
            text += f", repodata {_mb(self.repodata_bytes)} via {self.repodata_source}"
        text += f" in {self.seconds:.2f} s"
        if self.upstream_status == UpstreamStatus.NOT_MODIFIED:
            text += " (upstream not modified)"
        return text + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class CheckResult:
    channel: str
    platform: str
    specs: tuple[str, ...]
    ok: bool
    message: str  # the solver's explanation when not ok; the solution size when ok
    seconds: float
    checked_at: float

    @property
    def problem(self) -> str | None:
        if self.ok:
            return None
        return f"{self.channel}: {' '.join(self.specs)} does not solve on {self.platform}: " + (
            self.message
        )


@dataclass(frozen=True)
class DanglingReport:
    """A synced subdir's records that depend on names no record of the channel provides."""

    channel: str
    subdir: str
    found: Dangling

    def warning(self) -> str:
        return (
            f"{self.channel}/{self.subdir}: {self.found.records_text} on packages "
            f"this channel does not hold ({self.found.names_text}), e.g. "
            f"{'; '.join(self.found.examples)}. "
            "Clients cannot install them; `dependencies: solve` (or `all`) in the channel's "
            "config mirrors what the selected packages need"
        )


@dataclass(frozen=True)
class SyncReport:
    subdirs: tuple[SubdirReport, ...]
    # channel-level failures: dependencies our rules removed, lockfile packages upstream lacks
    problems: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()  # solvability against the published tree
    dangling: tuple[DanglingReport, ...] = ()  # per synced subdir; a warning, not a failure

    @property
    def ok(self) -> bool:
        return (
            all(s.ok for s in self.subdirs) and not self.problems and all(c.ok for c in self.checks)
        )


def _mb(size: int) -> str:
    """Human-readable size (decimal units, like download tools show)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"
