"""Per-subdir state: upstream's top-level keys, shard maps and orphans, upstream validators,
and the index files as last written."""

from __future__ import annotations

from collections.abc import Iterable

from mirror.adapters.catalog.connection import Connection
from mirror.adapters.catalog.values import OutputStat, UpstreamState


class SubdirState(Connection):
    """What a subdir's next sync and publish need to know about the last ones."""

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
