"""What syncs deleted and replaced, per subdir and run: the guards' memory over time."""

from __future__ import annotations

from mirror.adapters.catalog.connection import Connection


class GuardLog(Connection):
    """One row per sync that deleted or replaced published files; a row marked accepted (run
    with --allow-mass-delete/-replace past a limit) starts the count again."""

    def recent_changes(self, channel: str, subdir: str, since: float) -> tuple[int, int]:
        """(files deleted, files replaced) by runs after `since` and after the last accepted
        run of the subdir (whose own changes were accepted with it)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(deleted), 0), COALESCE(SUM(replaced), 0) FROM guard_log "
            "WHERE channel = ? AND subdir = ? AND at > ? AND at > COALESCE((SELECT MAX(at) "
            "FROM guard_log WHERE channel = ? AND subdir = ? AND accepted = 1), 0)",
            (channel, subdir, since, channel, subdir),
        ).fetchone()
        return int(row[0]), int(row[1])

    def log_changes(
        self, channel: str, subdir: str, *, at: float, deleted: int, replaced: int, accepted: bool
    ) -> None:
        if deleted or replaced or accepted:
            self._db.execute(
                "INSERT INTO guard_log VALUES (?, ?, ?, ?, ?, ?)",
                (channel, subdir, at, deleted, replaced, int(accepted)),
            )
