"""What changed since the last publish: file names per subdir, package names per channel."""

from __future__ import annotations

from collections.abc import Iterable

from mirror.adapters.catalog.connection import Connection
from mirror.core.records import name_from_filename


class ChangeLog(Connection):
    """The `dirty` and `channel_dirty` tables: kept until a publish completes, so a crash only
    means more work next time."""

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
