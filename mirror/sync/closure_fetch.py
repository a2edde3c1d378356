"""Fetching the upstream repodata a closure needs, once per subdir per run, conditionally.

An upstream that answers "not modified" still has to give the closure its records, so the last
full body of each subdir a closure reads is cached (zstd) under the state directory. A subdir
read through shards (sync/repodata_source.py) loads the shards of the names the closure walks to,
one round of names at a time, across every subdir the closure resolves from.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import zstandard

from mirror.adapters.state_files import write_atomically
from mirror.adapters.upstream import Fetched, NotModified, Upstream
from mirror.config.model import ChannelConfig
from mirror.core.closure import dependency_name
from mirror.core.records import UpstreamRepodata, parse_repodata
from mirror.core.shard_names import walk_names
from mirror.errors import MirrorError
from mirror.sync.closure_sources import Prefetched, SubdirRecords
from mirror.sync.context import SyncContext, open_channel_upstream, remembered
from mirror.sync.repodata_source import ShardOpener, wants_shards

log = logging.getLogger(__name__)

CACHE_DIR = "upstream-repodata"  # under state_dir: the last full body fetched per subdir
Member = tuple[ChannelConfig, str]  # a channel the closure resolves from, and one of its subdirs


def scratch_dir(ctx: SyncContext) -> Path:
    scratch = ctx.config.state_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


class Fetcher:
    """Fetches each needed subdir's repodata once, conditionally, falling back to the cache."""

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.fetched: dict[tuple[str, str], SubdirRecords] = {}
        self._lock = threading.Lock()

    def repodata(
        self, channel: ChannelConfig, subdir: str, names: Iterable[str] = ()
    ) -> UpstreamRepodata:
        """The subdir's records; through shards, those of the names loaded so far and `names`."""
        records = self._records(channel, subdir)
        records.load(names)
        return records.repodata()

    def reach(self, channel: ChannelConfig, members: Sequence[Member]) -> None:
        """Load, in every member subdir read through shards, the shards of each name that the
        channel's roots reach through dependencies (in any member)."""
        opened = [self._records(member, subdir) for member, subdir in members]
        if not any(r.sharded for r in opened):
            return  # repodata.json holds every name already
        include = channel.filters.include
        variants = channel.dependencies.variants
        roots = {dependency_name(spec) or "" for variant in variants for spec in variant}
        for records, (member, _) in zip(opened, members, strict=True):
            if member.name == channel.name:
                roots |= records.names_matching(include) if include else records.all_names()

        def fetch_round(names: tuple[str, ...]) -> set[str]:
            found: set[str] = set()
            for records in opened:
                records.load(names)
                found |= records.dependency_names(names)
            return found

        walk_names(roots - {""}, fetch_round)

    def prefetched(self, key: tuple[str, str]) -> Prefetched | None:
        """What the subdir sync gets: every name the closures loaded (and the channel's own)."""
        records = self.fetched.get(key)
        return records.prefetched() if records is not None else None

    def _records(self, channel: ChannelConfig, subdir: str) -> SubdirRecords:
        key = (channel.name, subdir)
        if key not in self.fetched:
            self.fetched[key] = self._open(channel, subdir)
        return self.fetched[key]

    def _open(self, channel: ChannelConfig, subdir: str) -> SubdirRecords:
        retries: Counter[str] = Counter()

        def on_retry(reason: str) -> None:
            with self._lock:
                retries[reason] += 1

        upstream = open_channel_upstream(self.ctx, channel, on_retry)
        records = SubdirRecords(
            channel,
            subdir,
            retries,
            ShardOpener(self.ctx, channel, subdir, upstream),
            lambda: self._fetch_full(channel, subdir, upstream),
        )
        if wants_shards(channel) and records.open_shards(remembered(self.ctx, channel, subdir)):
            return records
        records.use_full()
        return records

    def _fetch_full(
        self, channel: ChannelConfig, subdir: str, upstream: Upstream
    ) -> tuple[NotModified | Fetched, UpstreamRepodata]:
        memory = remembered(self.ctx, channel, subdir)
        cache = self.ctx.config.state_dir / CACHE_DIR / channel.name / f"{subdir}.json.zst"
        result = upstream.fetch_repodata(subdir, memory.previous, memory.skip_zst)
        if isinstance(result, NotModified):
            cached = _read_cache(cache)
            if cached is not None:
                return result, cached
            result = upstream.fetch_repodata(subdir, None, memory.skip_zst)
            assert isinstance(result, Fetched)
        _write_cache(cache, result.repodata.body)
        return result, result.repodata


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


__all__ = ["Fetcher", "Prefetched", "scratch_dir"]
