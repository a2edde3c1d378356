"""Run history and the daemon's schedule, for `mirror status`."""

from __future__ import annotations

import time

from mirror.adapters.catalog.connection import Connection


class RunHistory(Connection):
    """Sync runs as they ended, and when the daemon will next sync each channel."""

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
