"""Upstream shards kept in the state directory, named by their sha256, and each subdir's last
shard index body (so an index answered "not modified" still names the shards).

Nothing read from here is trusted: a shard is used only when its bytes hash to the name the
current index gives it, so a damaged or half-written file costs one fetch, never a wrong record.
That is also why writes are not fsynced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_DIR = "upstream-shards"  # under state_dir: <channel>/<subdir>/<sha256>.msgpack.zst
INDEX_FILE = "index.msgpack.zst"
SHARD_SUFFIX = ".msgpack.zst"


class ShardCache:
    """One channel/subdir's cached upstream shards and shard index."""

    def __init__(self, state_dir: Path, channel: str, subdir: str) -> None:
        self.folder = state_dir / CACHE_DIR / channel / subdir

    def index(self) -> bytes | None:
        return self._read(self.folder / INDEX_FILE)

    def put_index(self, data: bytes) -> None:
        self._write(self.folder / INDEX_FILE, data)

    def shard(self, sha256_hex: str) -> bytes | None:
        return self._read(self.folder / f"{sha256_hex}{SHARD_SUFFIX}")

    def put_shard(self, sha256_hex: str, data: bytes) -> None:
        self._write(self.folder / f"{sha256_hex}{SHARD_SUFFIX}", data)

    def keep_only(self, sha256_hexes: set[str]) -> int:
        """Delete the cached shards not named (and stray temp files); how many were deleted."""
        deleted = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return 0
        for entry in entries:
            name = entry.name
            stale_temp = name.startswith(".") and name.endswith(".tmp")
            unreferenced = name.endswith(SHARD_SUFFIX) and name != INDEX_FILE
            if stale_temp or (unreferenced and name[: -len(SHARD_SUFFIX)] not in sha256_hexes):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    deleted += 1
        return deleted

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _write(self, path: Path, data: bytes) -> None:
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(data)
            os.replace(temp, path)
        except OSError as exc:  # only a cache: the next run fetches again
            log.warning("could not cache %s: %s", path, exc)
            with contextlib.suppress(OSError):
                temp.unlink()
