"""Reports of local work: indexing a channel, taking drops, publishing a subdir's index files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mirror.reports.outcomes import DropResult


@dataclass(frozen=True)
class PublishResult:
    channel: str
    subdir: str
    records: int
    changed: tuple[str, ...] = ()  # index files (re)written
    spliced: bool = False
    shards_written: int = 0
    shards_deleted: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class QuarantinedFile:
    filename: str
    reason: str  # low-cardinality, for metrics
    message: str
    moved_to: Path


@dataclass(frozen=True)
class SubdirIndexReport:
    channel: str
    subdir: str
    new: int = 0
    changed: int = 0
    removed: int = 0
    quarantined: tuple[QuarantinedFile, ...] = ()
    published: PublishResult | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.channel}/{self.subdir}"

    def summary(self) -> str:
        records = self.published.records if self.published else 0
        text = (
            f"{self.label}: {records} records; new {self.new}, changed {self.changed}, "
            f"removed {self.removed}, quarantined {len(self.quarantined)} in {self.seconds:.2f} s"
        )
        if self.published and self.published.changed:
            text += f" (wrote {', '.join(self.published.changed)})"
        return text


@dataclass(frozen=True)
class IndexReport:
    subdirs: tuple[SubdirIndexReport, ...]
    channeldata_written: bool = False

    @property
    def quarantined(self) -> int:
        return sum(len(s.quarantined) for s in self.subdirs)


@dataclass(frozen=True)
class DropOutcome:
    source: Path
    result: DropResult
    subdir: str | None = None
    reason: str | None = None  # low-cardinality, for metrics
    message: str | None = None


@dataclass(frozen=True)
class DropReport:
    channel: str
    outcomes: tuple[DropOutcome, ...]
    published: tuple[PublishResult, ...] = ()
    seconds: float = 0.0

    def count(self, result: DropResult) -> int:
        return sum(1 for o in self.outcomes if o.result == result)
