"""One channel/subdir's upstream shard index and the shards loaded from it during one run.

Shards are loaded by package name as the rules reach them (include specs, a closure's walk,
lockfiles): from the state directory's cache when the bytes there still hash to the name the
index gives, else fetched from upstream. The records they hold are handed to the rest of the
sync as the same `UpstreamRepodata` that repodata.json gives, so selecting, planning and
publishing do not know which way the records came.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec

from mirror.adapters.upstream import FetchedBytes, Upstream, Validators
from mirror.core.records import Refusal, UpstreamRepodata
from mirror.core.secrets import redact_url
from mirror.core.upstream_shard_records import UpstreamShard, decode_shard
from mirror.core.upstream_shards import FALLBACK, MAX_SHARD_BYTES, ShardIndex, shard_url
from mirror.errors import ShardError, UpstreamError
from mirror.sync.shard_cache import ShardCache

log = logging.getLogger(__name__)

REFUSALS_LOGGED = 20


@dataclass
class ShardSession:
    """The index of one subdir and the shards loaded so far (a run's working state)."""

    label: str  # channel/subdir, for messages
    subdir: str
    upstream: Upstream
    index: ShardIndex
    index_url: str  # unredacted: shard URLs are resolved against it
    validators: Validators
    cache: ShardCache
    workers: int
    redact: Callable[[str], str]
    transferred_bytes: int = 0  # the index and the shards fetched (not those from the cache)
    fetched_shards: int = 0
    shards: dict[str, UpstreamShard] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    _built: tuple[int, UpstreamRepodata] | None = None

    def load(self, names: Iterable[str]) -> list[UpstreamShard]:
        """Load the shards of `names` that the index has and that are not loaded yet; the
        shards newly loaded. ShardError when one cannot be had (the caller falls back)."""
        todo = sorted({n for n in names if n in self.index.shards and n not in self.shards})
        if not todo:
            return []
        if len(todo) == 1 or self.workers == 1:
            loaded = [self._load_one(name) for name in todo]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
                loaded = list(pool.map(self._load_one, todo))
        for shard, fetched_bytes in loaded:
            self.shards[shard.name] = shard
            if fetched_bytes:
                self.transferred_bytes += fetched_bytes
                self.fetched_shards += 1
            self._refused(shard)
        return [shard for shard, _ in loaded]

    def _load_one(self, name: str) -> tuple[UpstreamShard, int]:
        digest = self.index.shards[name]
        url = shard_url(self.index_url, self.index.shards_base_url, digest)
        shown = self.redact(redact_url(url))
        cached = self.cache.shard(digest)
        if cached is not None:
            try:
                return decode_shard(cached, name=name, sha256_hex=digest, source=shown), 0
            except ShardError:
                pass  # a damaged cache file: fetch it again
        try:
            got = self.upstream.fetch_small(url, None, MAX_SHARD_BYTES, hash_checked=True)
        except UpstreamError as exc:
            if exc.reason == "not_found":
                raise ShardError(
                    f"{shown}: the shard of {name!r} that the index names is not there "
                    f"(404); {FALLBACK}",
                    reason="not_found",
                ) from None
            if exc.reason == "too_large":
                raise ShardError(f"{exc}; {FALLBACK}", reason="too_large") from None
            raise
        assert isinstance(got, FetchedBytes)  # never conditional
        shard = decode_shard(got.data, name=name, sha256_hex=digest, source=shown)
        self.cache.put_shard(digest, got.data)
        return shard, len(got.data)

    def _refused(self, shard: UpstreamShard) -> None:
        for refusal in shard.refused:
            self.refused.append(refusal)
            if len(self.refused) <= REFUSALS_LOGGED:
                log.warning(
                    "%s: refused upstream record %s: %s",
                    self.label,
                    refusal.filename,
                    refusal.reason,
                )
        if shard.unknown_keys:
            log.debug("%s: shard of %s has keys %s", self.label, shard.name, shard.unknown_keys)

    def repodata(self) -> UpstreamRepodata:
        """The loaded shards' records, as repodata.json would give them. Top level: `info`
        and the loaded names' `removed` (a shard carries no other top-level key)."""
        if self._built is not None and self._built[0] == len(self.shards):
            return self._built[1]
        entries: dict[str, tuple[str, msgspec.Raw]] = {}
        removed: set[str] = set()
        for name in sorted(self.shards):
            shard = self.shards[name]
            for filename, (group, raw) in shard.entries.items():
                entries[filename] = (group, msgspec.Raw(raw))
            removed.update(shard.removed)
        top_level = {
            "info": msgspec.Raw(msgspec.json.encode({"subdir": self.subdir})),
            "removed": msgspec.Raw(msgspec.json.encode(sorted(removed - set(entries)))),
        }
        built = UpstreamRepodata(entries=entries, top_level=top_level)
        self._built = (len(self.shards), built)
        return built

    def finish(self) -> int:
        """Every shard this run needs is loaded: drop the cached ones no longer referenced."""
        return self.cache.keep_only({shard.sha256 for shard in self.shards.values()})

    def summary(self) -> str:
        return (
            f"{len(self.shards)} of {len(self.index.shards)} shards, "
            f"{self.fetched_shards} fetched ({self.transferred_bytes:,} bytes with the index)"
        )
