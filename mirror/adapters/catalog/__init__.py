"""SQLite state: files with stats, hashes and records; what changed since the last publish;
shard maps; upstream validators; run history.

The tree on disk is the truth for what exists; the catalog lets us trust a file without hashing
it again (its size and mtime still match), render repodata without re-reading packages or
upstream, and know which records changed since repodata was last written (the `dirty` table,
kept until a publish completes, so a crash only means more work next time).
Only the thread that opened the catalog uses it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mirror.adapters.catalog.failures import explain_failure
from mirror.adapters.catalog.schema import FIRST_COMPATIBLE_VERSION, SCHEMA, SCHEMA_VERSION
from mirror.adapters.catalog.values import CatalogFile, OutputStat, StoredRecord, UpstreamState
from mirror.core.records import name_from_filename
from mirror.errors import CatalogError

BUSY_TIMEOUT_S = 30.0  # how long a write waits for another program holding the database


class Catalog:
    def __init__(self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._with_retry(self._set_up)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc

    def _set_up(self) -> None:
        # journal_mode=WAL needs a moment of exclusive access: the busy timeout does not apply,
        # hence the retry when several threads or processes open a new catalog at once
        self._db.execute("PRAGMA journal_mode=WAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: written by a newer mirror (schema {version}); upgrade mirror"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            if 0 < version < FIRST_COMPATIBLE_VERSION:
                # a pre-release layout: rebuilt from the tree (and upstream) by the next run
                self._drop_all()
            # later versions only add tables: CREATE ... IF NOT EXISTS migrates them in place
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _with_retry(self, action: Callable[[], None], attempts: int = 100) -> None:
        for attempt in range(attempts):
            try:
                action()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def _drop_all(self) -> None:
        tables = [
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            self._db.execute(f'DROP TABLE IF EXISTS "{table}"')

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:  # SQLite may have rolled back itself (disk full)
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._unusable(exc) from exc
            raise

    def _unusable(self, exc: sqlite3.DatabaseError) -> CatalogError:
        return explain_failure(self.path, exc, self.busy_timeout_s)

    # -- files ------------------------------------------------------------------------------

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

    def put_files(self, channel: str, subdir: str, files: Iterable[CatalogFile]) -> None:
        """Insert or replace files with their records; each becomes dirty (to be published)."""
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
        self._db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        self._mark_dirty(channel, subdir, (row[2] for row in rows))

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

    # -- changes since the last publish -----------------------------------------------------

    def _mark_dirty(self, channel: str, subdir: str, filenames: Iterable[str]) -> None:
        names = list(filenames)
        self._db.executemany(
            "INSERT OR IGNORE INTO dirty VALUES (?, ?, ?)",
            ((channel, subdir, name) for name in names),
        )
        packages = {name_from_filename(fn) for fn in names} - {None}
        self._db.executemany(
            "INSERT OR IGNORE INTO channel_dirty VALUES (?, ?)",
            ((channel, package) for package in packages),
        )

    def channel_dirty(self, channel: str) -> set[str]:
        rows = self._db.execute("SELECT name FROM channel_dirty WHERE channel = ?", (channel,))
        return {row[0] for row in rows}

    def clear_channel_dirty(self, channel: str, names: Iterable[str]) -> None:
        self._db.executemany(
            "DELETE FROM channel_dirty WHERE channel = ? AND name = ?",
            ((channel, name) for name in names),
        )

    def dirty(self, channel: str, subdir: str) -> set[str]:
        rows = self._db.execute(
            "SELECT filename FROM dirty WHERE channel = ? AND subdir = ?", (channel, subdir)
        )
        return {row[0] for row in rows}

    def clear_dirty(self, channel: str, subdir: str, filenames: Iterable[str]) -> None:
        self._db.executemany(
            "DELETE FROM dirty WHERE channel = ? AND subdir = ? AND filename = ?",
            ((channel, subdir, name) for name in filenames),
        )

    # -- upstream top-level keys ------------------------------------------------------------

    def top_level(self, channel: str, subdir: str) -> bytes | None:
        row = self._db.execute(
            "SELECT top_level FROM subdir_meta WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        ).fetchone()
        return row[0] if row else None

    def set_top_level(self, channel: str, subdir: str, packed: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO subdir_meta VALUES (?, ?, ?)", (channel, subdir, packed)
        )

    # -- shards -----------------------------------------------------------------------------

    def shard_map(self, channel: str, subdir: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT name, sha256 FROM shards WHERE channel = ? AND subdir = ?", (channel, subdir)
        )
        return dict(rows)

    def set_shards(self, channel: str, subdir: str, changes: dict[str, str | None]) -> None:
        """name -> new shard hash, or None when the name no longer has records."""
        self._db.executemany(
            "DELETE FROM shards WHERE channel = ? AND subdir = ? AND name = ?",
            ((channel, subdir, n) for n, digest in changes.items() if digest is None),
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?)",
            ((channel, subdir, n, digest) for n, digest in changes.items() if digest is not None),
        )

    def shard_orphans(self, channel: str, subdir: str) -> dict[str, float]:
        rows = self._db.execute(
            "SELECT sha256, since FROM shard_orphans WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        )
        return dict(rows)

    def set_shard_orphans(
        self, channel: str, subdir: str, add: dict[str, float], drop: Iterable[str]
    ) -> None:
        self._db.executemany(
            "DELETE FROM shard_orphans WHERE channel = ? AND subdir = ? AND sha256 = ?",
            ((channel, subdir, digest) for digest in drop),
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO shard_orphans VALUES (?, ?, ?, ?)",
            ((channel, subdir, digest, since) for digest, since in add.items()),
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

    def forget_validators(self, channel: str) -> None:
        """Make the next sync of the channel fetch and plan in full (no 304 short-cut)."""
        self._db.execute(
            "UPDATE upstream_state SET etag = NULL, last_modified = NULL, selection_key = NULL "
            "WHERE channel = ?",
            (channel,),
        )

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
            "SELECT name, size, mtime_ns, render_key, zst_level FROM outputs "
            "WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        )
        return {name: OutputStat(*rest) for name, *rest in rows}

    def put_outputs(self, channel: str, subdir: str, outputs: dict[str, OutputStat]) -> None:
        """Record what was written; outputs not named keep their previous entry."""
        self._db.executemany(
            "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (channel, subdir, name, s.size, s.mtime_ns, s.render_key, s.zst_level)
                for name, s in outputs.items()
            ),
        )

    def drop_outputs(self, channel: str, subdir: str, names: Iterable[str]) -> None:
        self._db.executemany(
            "DELETE FROM outputs WHERE channel = ? AND subdir = ? AND name = ?",
            ((channel, subdir, name) for name in names),
        )

    # -- status ---------------------------------------------------------------------------

    def published_stats(self, channel: str, subdir: str) -> tuple[int, int]:
        """(records, bytes of their files) a subdir publishes."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files WHERE channel = ? AND subdir = ? "
            "AND record IS NOT NULL",
            (channel, subdir),
        ).fetchone()
        return int(row[0]), int(row[1])

    def subdirs(self, channel: str) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT subdir FROM files WHERE channel = ? UNION "
            "SELECT DISTINCT subdir FROM outputs WHERE channel = ?",
            (channel, channel),
        )
        return sorted(row[0] for row in rows)

    def set_next_runs(self, next_runs: dict[str, float | None]) -> None:
        now = time.time()
        self._db.execute("DELETE FROM schedule")
        self._db.executemany(
            "INSERT INTO schedule VALUES (?, ?, ?)",
            ((channel, when, now) for channel, when in next_runs.items()),
        )

    def next_runs(self) -> dict[str, float | None]:
        return dict(self._db.execute("SELECT channel, next_run FROM schedule"))

    def last_run(self, channel: str, subdir: str) -> tuple[float, str, str | None] | None:
        """(finished_at, outcome, message) of the latest sync of a subdir."""
        row = self._db.execute(
            "SELECT finished_at, outcome, message FROM sync_runs WHERE channel = ? AND subdir = ? "
            "ORDER BY id DESC LIMIT 1",
            (channel, subdir),
        ).fetchone()
        return (float(row[0]), str(row[1]), row[2]) if row else None

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


__all__ = ["Catalog", "CatalogFile", "OutputStat", "StoredRecord", "UpstreamState"]
