"""SQLite state: published files with stats and hashes, upstream validators, sync runs.

The tree on disk is the truth; the catalog only lets us trust a file without hashing it again
(its recorded size and mtime still match) and ask upstream "has this changed?".
Only the thread that opened the catalog uses it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import CatalogError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    channel   TEXT NOT NULL,
    subdir    TEXT NOT NULL,
    filename  TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    sha256    TEXT,
    md5       TEXT,
    origin    TEXT NOT NULL,
    PRIMARY KEY (channel, subdir, filename)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS upstream_state (
    channel        TEXT NOT NULL,
    subdir         TEXT NOT NULL,
    upstream_key   TEXT NOT NULL,
    variant        TEXT NOT NULL,
    etag           TEXT,
    last_modified  TEXT,
    zst_missing_until REAL,
    selection_key  TEXT,
    selection_valid_until_ms INTEGER,
    PRIMARY KEY (channel, subdir)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outputs (
    channel   TEXT NOT NULL,
    subdir    TEXT NOT NULL,
    name      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    PRIMARY KEY (channel, subdir, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_runs (
    id               INTEGER PRIMARY KEY,
    channel          TEXT NOT NULL,
    subdir           TEXT NOT NULL,
    started_at       REAL NOT NULL,
    finished_at      REAL NOT NULL,
    outcome          TEXT NOT NULL,
    downloaded_files INTEGER NOT NULL,
    downloaded_bytes INTEGER NOT NULL,
    deleted_files    INTEGER NOT NULL,
    failed_files     INTEGER NOT NULL,
    message          TEXT
);
"""


@dataclass(frozen=True, slots=True)
class CatalogFile:
    filename: str
    size: int
    mtime_ns: int
    sha256: str | None
    md5: str | None
    origin: str


@dataclass(frozen=True)
class UpstreamState:
    """What we last saw of one upstream subdir, to ask for it conditionally next time.

    `upstream_key` identifies the upstream URL (a hash, never the URL: it may hold a token);
    `variant` is the file the validators belong to (repodata.json.zst or repodata.json).
    `selection_key` fingerprints the filters that produced what is published.
    """

    upstream_key: str
    variant: str
    etag: str | None
    last_modified: str | None
    zst_missing_until: float | None
    selection_key: str | None
    selection_valid_until_ms: int | None


@dataclass(frozen=True)
class OutputStat:
    size: int
    mtime_ns: int


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CatalogError(
                    f"{path}: written by a newer mirror (schema {version}); upgrade mirror"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise CatalogError(
                f"{path}: the state database is unusable ({exc}); move it aside and run "
                "`mirror sync` again: it is rebuilt by hashing the files already in the tree"
            ) from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- files ------------------------------------------------------------------------------

    def files(self, channel: str, subdir: str) -> dict[str, CatalogFile]:
        rows = self._db.execute(
            "SELECT filename, size, mtime_ns, sha256, md5, origin FROM files "
            "WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        )
        return {row[0]: CatalogFile(*row) for row in rows}

    def put_files(self, channel: str, subdir: str, files: Iterable[CatalogFile]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (channel, subdir, f.filename, f.size, f.mtime_ns, f.sha256, f.md5, f.origin)
                for f in files
            ),
        )

    def remove_files(self, channel: str, subdir: str, filenames: Iterable[str]) -> None:
        self._db.executemany(
            "DELETE FROM files WHERE channel = ? AND subdir = ? AND filename = ?",
            ((channel, subdir, name) for name in filenames),
        )

    # -- upstream validators ----------------------------------------------------------------

    def upstream_state(self, channel: str, subdir: str) -> UpstreamState | None:
        row = self._db.execute(
            "SELECT upstream_key, variant, etag, last_modified, zst_missing_until, "
            "selection_key, selection_valid_until_ms FROM upstream_state "
            "WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        ).fetchone()
        return UpstreamState(*row) if row else None

    def save_upstream_state(self, channel: str, subdir: str, state: UpstreamState) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO upstream_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                channel,
                subdir,
                state.upstream_key,
                state.variant,
                state.etag,
                state.last_modified,
                state.zst_missing_until,
                state.selection_key,
                state.selection_valid_until_ms,
            ),
        )

    # -- published outputs (repodata files) -------------------------------------------------

    def outputs(self, channel: str, subdir: str) -> dict[str, OutputStat]:
        rows = self._db.execute(
            "SELECT name, size, mtime_ns FROM outputs WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        )
        return {name: OutputStat(size, mtime_ns) for name, size, mtime_ns in rows}

    def put_outputs(self, channel: str, subdir: str, outputs: dict[str, OutputStat]) -> None:
        self._db.execute("DELETE FROM outputs WHERE channel = ? AND subdir = ?", (channel, subdir))
        self._db.executemany(
            "INSERT INTO outputs VALUES (?, ?, ?, ?, ?)",
            ((channel, subdir, name, s.size, s.mtime_ns) for name, s in outputs.items()),
        )

    # -- run history ------------------------------------------------------------------------

    def record_run(
        self,
        *,
        channel: str,
        subdir: str,
        started_at: float,
        outcome: str,
        downloaded_files: int,
        downloaded_bytes: int,
        deleted_files: int,
        failed_files: int,
        message: str | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO sync_runs (channel, subdir, started_at, finished_at, outcome, "
            "downloaded_files, downloaded_bytes, deleted_files, failed_files, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                channel,
                subdir,
                started_at,
                time.time(),
                outcome,
                downloaded_files,
                downloaded_bytes,
                deleted_files,
                failed_files,
                message,
            ),
        )
