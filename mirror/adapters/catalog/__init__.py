"""SQLite state: files with stats, hashes and records; what changed since the last publish;
shard maps; upstream validators; run history; what the last closures said; records depending on
names their channel lacks.

The tree is the truth for what exists; the catalog lets us trust a file without hashing
it again (its size and mtime still match), render repodata without re-reading packages or
upstream, and know which records changed since repodata was last written (the `dirty` table,
kept until a publish completes, so a crash only means more work next time).
Only the thread that opened the catalog uses it.
"""

from __future__ import annotations

from pathlib import Path

from mirror.adapters.catalog.closure_notes import ClosureNote, ClosureNoteKind, ClosureNotes
from mirror.adapters.catalog.connection import BUSY_TIMEOUT_S
from mirror.adapters.catalog.dangling import DanglingTable
from mirror.adapters.catalog.files import CHANNEL_ROOT, FileTable
from mirror.adapters.catalog.guard_log import GuardLog
from mirror.adapters.catalog.runs import RunHistory
from mirror.adapters.catalog.sources import RepodataSources
from mirror.adapters.catalog.subdir_state import SubdirState
from mirror.adapters.catalog.values import (
    CatalogFile,
    OutputStat,
    RepodataSourceState,
    StoredRecord,
    UpstreamState,
)

CATALOG_NAME = "catalog.sqlite"  # under the state directory


class Catalog(
    FileTable, SubdirState, RunHistory, ClosureNotes, DanglingTable, RepodataSources, GuardLog
):
    """The state database, one table group per mixin (see their modules)."""

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Catalog:
        return cls(state_dir / CATALOG_NAME, busy_timeout_s=busy_timeout_s)


__all__ = [
    "BUSY_TIMEOUT_S",
    "CATALOG_NAME",
    "CHANNEL_ROOT",
    "Catalog",
    "CatalogFile",
    "ClosureNote",
    "ClosureNoteKind",
    "OutputStat",
    "RepodataSourceState",
    "StoredRecord",
    "UpstreamState",
]
