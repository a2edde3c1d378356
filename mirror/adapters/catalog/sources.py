"""Per-subdir memory of where upstream records came from: shards or repodata.json, how many
bytes that took, and until when an upstream without a shard index is believed to have none."""

from __future__ import annotations

from mirror.adapters.catalog.connection import Connection
from mirror.adapters.catalog.values import RepodataSourceState


class RepodataSources(Connection):
    """The `repodata_source` table: one row per mirrored subdir, written by each fetch."""

    def repodata_source_state(self, channel: str, subdir: str) -> RepodataSourceState | None:
        row = self._db.execute(
            "SELECT upstream_key, source, repodata_bytes, index_missing_until "
            "FROM repodata_source WHERE channel = ? AND subdir = ?",
            (channel, subdir),
        ).fetchone()
        return RepodataSourceState(*row) if row else None

    def save_repodata_source_state(
        self, channel: str, subdir: str, state: RepodataSourceState
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO repodata_source VALUES (?, ?, ?, ?, ?, ?)",
            (
                channel,
                subdir,
                state.upstream_key,
                state.source,
                state.repodata_bytes,
                state.index_missing_until,
            ),
        )
