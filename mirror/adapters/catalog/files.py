"""The files of the tree with their stats, hashes and records (the `files` table)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

from mirror.adapters.catalog.changes import ChangeLog
from mirror.adapters.catalog.values import CatalogFile, StoredRecord

# The subdir key of what a channel publishes at its root (channeldata.json), which is no subdir
CHANNEL_ROOT = ""

# what one row's values can make SQLite refuse (an integer past 64 bits, a value of no SQL
# type); a database that is locked, full or damaged raises other errors, for the whole batch
_ROW_ERRORS = (OverflowError, ValueError, sqlite3.InterfaceError, sqlite3.IntegrityError)
_PUT = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class FileTable(ChangeLog):
    """Files and their records; every change marks the file as awaiting publication."""

    def files(self, channel: str, subdir: str) -> dict[str, CatalogFile]:
        """Every file of a subdir with its stats and hashes (records not loaded)."""
        rows = self._db.execute(
            "SELECT filename, size, mtime_ns, sha256, md5, origin, name, indexed_ms FROM files "
            "WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        )
        return {
            row[0]: CatalogFile(*row[:7], indexed_ms=row[7])  # type: ignore[misc]
            for row in rows
        }

    def files_named(
        self, channel: str, subdir: str, filenames: Iterable[str]
    ) -> dict[str, CatalogFile]:
        """Like files(), for just these names (no scan of a large subdir)."""
        found = {}
        for filename in filenames:
            row = self._db.execute(
                "SELECT filename, size, mtime_ns, sha256, md5, origin, name, indexed_ms FROM files "
                "WHERE channel = ? AND subdir = ? AND filename = ?",
                (channel, subdir, filename),
            ).fetchone()
            if row:
                found[filename] = CatalogFile(*row[:7], indexed_ms=row[7])  # type: ignore[misc]
        return found

    def put_files(self, channel: str, subdir: str, files: Iterable[CatalogFile]) -> dict[str, str]:
        """Insert or replace files with their records; each becomes dirty (to be published).
        A row SQLite refuses is left out, the others go in: the refused ones by file name,
        with why (the caller takes their files back out of the tree)."""
        rows = [
            (
                channel,
                subdir,
                f.filename,
                f.size,
                f.mtime_ns,
                f.sha256,
                f.md5,
                f.origin,
                f.name,
                f.record,
                f.indexed_ms,
                f.run_exports,
                f.about,
            )
            for f in files
        ]
        refused: dict[str, str] = {}
        try:
            self._db.executemany(_PUT, rows)
        except _ROW_ERRORS:
            for row in rows:  # again one by one (INSERT OR REPLACE: the ones in are unchanged)
                try:
                    self._db.execute(_PUT, row)
                except _ROW_ERRORS as exc:
                    refused[str(row[2])] = f"the catalog cannot store its row ({exc})"
        self._mark_dirty(channel, subdir, (str(row[2]) for row in rows if row[2] not in refused))
        return refused

    def update_stats(
        self, channel: str, subdir: str, stats: Iterable[tuple[str, int, int]]
    ) -> None:
        """A file was touched but its bytes are unchanged: only its size/mtime are new."""
        self._db.executemany(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE channel = ? AND subdir = ? "
            "AND filename = ?",
            ((size, mtime, channel, subdir, name) for name, size, mtime in stats),
        )

    def update_records(
        self,
        channel: str,
        subdir: str,
        records: Iterable[tuple[str, str, bytes]],
        indexed_ms: int,
    ) -> None:
        """(filename, package name, record): upstream changed a record (a repodata patch)
        while the file stayed the same. A file without an indexed time gets `indexed_ms`."""
        changed = list(records)
        self._db.executemany(
            "UPDATE files SET record = ?, name = ?, indexed_ms = COALESCE(indexed_ms, ?) "
            "WHERE channel = ? AND subdir = ? AND filename = ?",
            ((raw, name, indexed_ms, channel, subdir, fn) for fn, name, raw in changed),
        )
        self._mark_dirty(channel, subdir, (fn for fn, _, _ in changed))

    def retire_records(self, channel: str, subdir: str, filenames: Iterable[str]) -> None:
        """Take records out of the index while their files still exist: files are deleted only
        after the repodata that named them is replaced, and the row (with its stats) is how the
        next run finds a file whose deletion a crash interrupted."""
        names = list(filenames)
        self._db.executemany(
            "UPDATE files SET record = NULL WHERE channel = ? AND subdir = ? AND filename = ?",
            ((channel, subdir, name) for name in names),
        )
        self._mark_dirty(channel, subdir, names)

    def remove_files(
        self, channel: str, subdir: str, filenames: Iterable[str], *, mark_dirty: bool = True
    ) -> None:
        names = list(filenames)
        self._db.executemany(
            "DELETE FROM files WHERE channel = ? AND subdir = ? AND filename = ?",
            ((channel, subdir, name) for name in names),
        )
        if mark_dirty:
            self._mark_dirty(channel, subdir, names)

    def records(self, channel: str, subdir: str) -> Iterator[StoredRecord]:
        """Every record of a subdir (files whose record is known)."""
        rows = self._db.execute(
            "SELECT filename, record, indexed_ms FROM files "
            "WHERE channel = ? AND subdir = ? AND record IS NOT NULL",
            (channel, subdir),
        )
        for filename, record, indexed_ms in rows:
            yield StoredRecord(filename, record, indexed_ms)

    def records_of(
        self, channel: str, subdir: str, filenames: Iterable[str]
    ) -> dict[str, StoredRecord]:
        found = {}
        for filename in filenames:
            row = self._db.execute(
                "SELECT record, indexed_ms FROM files WHERE channel = ? AND subdir = ? "
                "AND filename = ? AND record IS NOT NULL",
                (channel, subdir, filename),
            ).fetchone()
            if row:
                found[filename] = StoredRecord(filename, row[0], row[1])
        return found

    def records_named(self, channel: str, subdir: str, name: str) -> list[StoredRecord]:
        # without statistics SQLite would walk the whole subdir by primary key for each name
        rows = self._db.execute(
            "SELECT filename, record, indexed_ms FROM files INDEXED BY files_by_name "
            "WHERE channel = ? AND subdir = ? AND name = ? AND record IS NOT NULL",
            (channel, subdir, name),
        )
        return [StoredRecord(*row) for row in rows]

    def count_records(self, channel: str, subdir: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM files WHERE channel = ? AND subdir = ? AND record IS NOT NULL",
            (channel, subdir),
        ).fetchone()
        return int(row[0])

    def names(self, channel: str, subdir: str) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT name FROM files WHERE channel = ? AND subdir = ? AND name IS NOT NULL",
            (channel, subdir),
        )
        return {row[0] for row in rows}

    def record_bytes(self, channel: str, subdir: str) -> dict[str, bytes]:
        """filename -> stored record, to compare with what upstream now says."""
        rows = self._db.execute(
            "SELECT filename, record FROM files WHERE channel = ? AND subdir = ? "
            "AND record IS NOT NULL",
            (channel, subdir),
        )
        return dict(rows)

    def extras_of(
        self, channel: str, subdir: str, filenames: Iterable[str]
    ) -> dict[str, tuple[bytes | None, bytes | None]]:
        found = {}
        for filename in filenames:
            row = self._db.execute(
                "SELECT run_exports, about FROM files WHERE channel = ? AND subdir = ? "
                "AND filename = ?",
                (channel, subdir, filename),
            ).fetchone()
            if row:
                found[filename] = (row[0], row[1])
        return found

    def extras(self, channel: str, subdir: str) -> Iterator[tuple[str, bytes | None, bytes | None]]:
        """(filename, run_exports, about) of every file, for run_exports.json/channeldata."""
        yield from self._db.execute(
            "SELECT filename, run_exports, about FROM files WHERE channel = ? AND subdir = ? "
            "AND record IS NOT NULL",
            (channel, subdir),
        )

    def published_stats(self, channel: str, subdir: str) -> tuple[int, int]:
        """(records, bytes of their files) a subdir publishes."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE channel = ? AND subdir = ? "
            "AND record IS NOT NULL",
            (channel, subdir),
        ).fetchone()
        return int(row[0]), int(row[1])

    def subdirs(self, channel: str) -> list[str]:
        """The channel's subdirs with files or index files; not its root (CHANNEL_ROOT)."""
        rows = self._db.execute(
            "SELECT DISTINCT subdir FROM files WHERE channel = ? AND subdir != ? UNION "
            "SELECT DISTINCT subdir FROM outputs WHERE channel = ? AND subdir != ?",
            (channel, CHANNEL_ROOT, channel, CHANNEL_ROOT),
        )
        return sorted(row[0] for row in rows)
