"""Snapshots of a channel's published files, kept in `<state_dir>/snapshots.sqlite`.

A separate database from the catalog on purpose: the catalog can be rebuilt from the tree, a
history of snapshots cannot. Each file version is one row with the snapshot that added it and
the one that removed it (NULL while current), so the files of any snapshot, and the delta
between two, are range queries, and a snapshot costs rows only for what changed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import StoreError

SNAPSHOTS_NAME = "snapshots.sqlite"
ORIGIN_LOCAL = "local"  # taken of a tree this process published
ORIGIN_IMPORT = "import"  # the target of an imported bundle

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    channel    TEXT NOT NULL,
    id         INTEGER NOT NULL,
    digest     TEXT NOT NULL,   -- sha256 over the sorted (path, sha256) list
    created_at REAL NOT NULL,
    files      INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    origin     TEXT NOT NULL,
    remote_id  INTEGER,         -- imports: the id the exporting side gave this snapshot
    PRIMARY KEY (channel, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_files (
    channel    TEXT NOT NULL,
    path       TEXT NOT NULL,   -- relative to the channel folder, '/'-separated
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    added_in   INTEGER NOT NULL,
    removed_in INTEGER          -- NULL: in the current snapshot
);
CREATE INDEX IF NOT EXISTS tree_files_current ON tree_files (channel, removed_in, path);
CREATE INDEX IF NOT EXISTS tree_files_added ON tree_files (channel, added_in);
CREATE INDEX IF NOT EXISTS tree_files_path ON tree_files (channel, path);
CREATE TABLE IF NOT EXISTS exports (
    channel   TEXT NOT NULL,
    target_id INTEGER NOT NULL,
    path      TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (channel, target_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Snapshot:
    channel: str
    id: int
    digest: str
    created_at: float
    files: int
    bytes: int
    origin: str
    remote_id: int | None = None

    @property
    def shown_id(self) -> int:
        """The id both sides know a snapshot by: the exporting side's."""
        return self.remote_id if self.remote_id is not None else self.id


@dataclass(frozen=True)
class FileState:
    path: str
    size: int
    mtime_ns: int
    sha256: str


class SnapshotStore:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """`read_only`: for looking without changing anything (a dry run); the database must
        exist then, and writing through this store fails."""
        self.path = path
        try:
            if read_only:
                # A read-only reader of a WAL database creates (and leaves) its -wal and -shm
                # files; with no -wal file no connection is open, and an immutable read of
                # the main file creates nothing.
                wal_open = path.with_name(path.name + "-wal").exists()
                uri = f"{path.absolute().as_uri()}?{'mode=ro' if wal_open else 'immutable=1'}"
                self._db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
                self._db.execute("SELECT 1 FROM snapshots LIMIT 1")
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(
                f"{path}: cannot open the snapshot database ({exc}); it holds the history "
                "bundles are cut from: restore it, or start over with `mirror export --full`"
            ) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------

    def current(self, channel: str) -> Snapshot | None:
        row = self._db.execute(
            "SELECT channel, id, digest, created_at, files, bytes, origin, remote_id "
            "FROM snapshots WHERE channel = ? ORDER BY id DESC LIMIT 1",
            (channel,),
        ).fetchone()
        return Snapshot(*row) if row else None

    def get(self, channel: str, snapshot_id: int) -> Snapshot | None:
        row = self._db.execute(
            "SELECT channel, id, digest, created_at, files, bytes, origin, remote_id "
            "FROM snapshots WHERE channel = ? AND id = ?",
            (channel, snapshot_id),
        ).fetchone()
        return Snapshot(*row) if row else None

    def snapshots(self, channel: str | None = None) -> list[Snapshot]:
        rows = self._db.execute(
            "SELECT channel, id, digest, created_at, files, bytes, origin, remote_id "
            "FROM snapshots WHERE ? IS NULL OR channel = ? ORDER BY channel, id",
            (channel, channel),
        )
        return [Snapshot(*row) for row in rows]

    def current_files(self, channel: str) -> dict[str, FileState]:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, sha256 FROM tree_files "
            "WHERE channel = ? AND removed_in IS NULL",
            (channel,),
        )
        return {row[0]: FileState(*row) for row in rows}

    def files_at(self, channel: str, snapshot_id: int) -> dict[str, FileState]:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, sha256 FROM tree_files WHERE channel = ? "
            "AND added_in <= ? AND (removed_in IS NULL OR removed_in > ?)",
            (channel, snapshot_id, snapshot_id),
        )
        return {row[0]: FileState(*row) for row in rows}

    def bytes_since(self, channel: str, snapshot_id: int) -> int:
        """What a bundle since that snapshot would carry: current files it did not have."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(cur.size), 0) FROM tree_files AS cur "
            "WHERE cur.channel = ? AND cur.removed_in IS NULL AND NOT EXISTS ("
            " SELECT 1 FROM tree_files AS old WHERE old.channel = cur.channel"
            " AND old.path = cur.path AND old.sha256 = cur.sha256 AND old.added_in <= ?"
            " AND (old.removed_in IS NULL OR old.removed_in > ?))",
            (channel, snapshot_id, snapshot_id),
        ).fetchone()
        return int(row[0])

    def next_id(self) -> int:
        """Ids grow across all channels, so a newer snapshot always has a larger id."""
        row = self._db.execute("SELECT MAX(id) FROM snapshots").fetchone()
        return (row[0] or 0) + 1

    def last_export(self, channel: str) -> int | None:
        row = self._db.execute(
            "SELECT MAX(target_id) FROM exports WHERE channel = ?", (channel,)
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    # -- writing ----------------------------------------------------------------------------

    def record(
        self,
        channel: str,
        snapshot_id: int,
        digest: str,
        changed: Iterable[FileState],
        removed: Iterable[str],
        totals: tuple[int, int],
        origin: str,
        remote_id: int | None = None,
    ) -> Snapshot:
        """A new snapshot: `changed` files (new or with new bytes) and `removed` paths."""
        created = time.time()
        with self._transaction():
            for path in removed:
                self._db.execute(
                    "UPDATE tree_files SET removed_in = ? "
                    "WHERE channel = ? AND path = ? AND removed_in IS NULL",
                    (snapshot_id, channel, path),
                )
            for state in changed:
                self._db.execute(
                    "UPDATE tree_files SET removed_in = ? "
                    "WHERE channel = ? AND path = ? AND removed_in IS NULL",
                    (snapshot_id, channel, state.path),
                )
                self._db.execute(
                    "INSERT INTO tree_files VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    (channel, state.path, state.size, state.mtime_ns, state.sha256, snapshot_id),
                )
            self._db.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (channel, snapshot_id, digest, created, *totals, origin, remote_id),
            )
        return Snapshot(channel, snapshot_id, digest, created, *totals, origin, remote_id)

    def touch(self, channel: str, states: Iterable[FileState]) -> None:
        """Same bytes, new stat (a file rewritten identically): remember the new mtime."""
        with self._transaction():
            for state in states:
                self._db.execute(
                    "UPDATE tree_files SET size = ?, mtime_ns = ? "
                    "WHERE channel = ? AND path = ? AND removed_in IS NULL",
                    (state.size, state.mtime_ns, channel, state.path),
                )

    def record_export(self, channel: str, target_id: int, path: Path) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?)",
                (channel, target_id, str(path), time.time()),
            )
