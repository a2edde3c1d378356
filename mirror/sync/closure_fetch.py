"""Fetching the upstream repodata a closure needs, once per subdir per run, conditionally.

An upstream that answers "not modified" still has to give the closure its records, so the last
full body of each subdir a closure reads is cached (zstd) under the state directory.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import zstandard

from mirror.adapters.state_files import write_atomically
from mirror.adapters.upstream import Fetched, NotModified
from mirror.config.model import ChannelConfig
from mirror.core.records import UpstreamRepodata, parse_repodata
from mirror.errors import MirrorError
from mirror.sync.context import SyncContext, open_channel_upstream, remembered

log = logging.getLogger(__name__)

CACHE_DIR = "upstream-repodata"  # under state_dir: the last full body fetched per subdir


@dataclass(frozen=True)
class Prefetched:
    """A subdir's repodata fetched by the closure phase, so the subdir sync does not refetch."""

    result: NotModified | Fetched
    repodata: UpstreamRepodata
    retries: Counter[str]


def scratch_dir(ctx: SyncContext) -> Path:
    scratch = ctx.config.state_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


class Fetcher:
    """Fetches each needed subdir's repodata once, conditionally, falling back to the cache."""

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.fetched: dict[tuple[str, str], Prefetched] = {}
        self._lock = threading.Lock()

    def repodata(self, channel: ChannelConfig, subdir: str) -> UpstreamRepodata:
        key = (channel.name, subdir)
        if key not in self.fetched:
            self.fetched[key] = self._fetch(channel, subdir)
        return self.fetched[key].repodata

    def _fetch(self, channel: ChannelConfig, subdir: str) -> Prefetched:
        ctx = self.ctx
        retries: Counter[str] = Counter()

        def on_retry(reason: str) -> None:
            with self._lock:
                retries[reason] += 1

        upstream = open_channel_upstream(ctx, channel, on_retry)
        memory = remembered(ctx, channel, subdir)
        cache = ctx.config.state_dir / CACHE_DIR / channel.name / f"{subdir}.json.zst"
        result = upstream.fetch_repodata(subdir, memory.previous, memory.skip_zst)
        if isinstance(result, NotModified):
            cached = _read_cache(cache)
            if cached is not None:
                return Prefetched(result, cached, retries)
            result = upstream.fetch_repodata(subdir, None, memory.skip_zst)
            assert isinstance(result, Fetched)
        _write_cache(cache, result.repodata.body)
        return Prefetched(result, result.repodata, retries)


def _read_cache(path: Path) -> UpstreamRepodata | None:
    try:
        body = zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 34)
        return parse_repodata(body, source=str(path))
    except (OSError, zstandard.ZstdError, MirrorError):
        return None  # a missing or damaged cache costs one full fetch, nothing else


def _write_cache(path: Path, body: bytes | bytearray) -> None:
    try:
        write_atomically(path, zstandard.ZstdCompressor(level=3, threads=-1).compress(bytes(body)))
    except OSError as exc:  # only a cache: the next run fetches in full
        log.warning("could not cache upstream repodata at %s: %s", path, exc)
