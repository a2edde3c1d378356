"""Reports of moving a tree across the air gap: an export written, an import applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mirror.core.bundle_manifest import Manifest


@dataclass(frozen=True)
class ExportReport:
    path: Path | None  # None: nothing changed since that snapshot, no bundle written
    manifest: Manifest | None
    seconds: float

    @property
    def bytes(self) -> int:
        return self.manifest.stream_size if self.manifest else 0


@dataclass
class ImportReport:
    bundle: Path
    dry_run: bool
    channels: list[str] = field(default_factory=list)  # one line per channel: from -> to
    written: int = 0
    written_bytes: int = 0
    skipped: int = 0  # already in place with the right bytes
    deleted: int = 0
    seconds: float = 0.0
