"""One channel/subdir's upstream records during the closure phase: a shard session that grows
name by name as closures walk, or the whole repodata.json; and what the subdir sync then gets."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from mirror.adapters.upstream import Fetched, NotModified
from mirror.config.model import ChannelConfig
from mirror.core.closure import dependency_name
from mirror.core.records import UpstreamRepodata, name_from_filename
from mirror.core.shard_names import names_for_specs
from mirror.core.specs import Spec
from mirror.errors import ShardError
from mirror.sync.context import Remembered
from mirror.sync.repodata_source import FULL, SHARDS, ShardOpener, own_names
from mirror.sync.shard_session import ShardSession

log = logging.getLogger(__name__)

FullFetch = Callable[[], tuple[NotModified | Fetched, UpstreamRepodata]]


@dataclass(frozen=True)
class Prefetched:
    """A subdir's repodata fetched by the closure phase, so the subdir sync does not refetch."""

    result: NotModified | Fetched
    repodata: UpstreamRepodata
    retries: Counter[str]
    kind: str = FULL  # "shards" or "full"
    transferred_bytes: int = 0


class _Depends(msgspec.Struct):
    depends: list[str] = []


class SubdirRecords:
    """The records of one channel/subdir for this run's closures."""

    def __init__(
        self,
        channel: ChannelConfig,
        subdir: str,
        retries: Counter[str],
        opener: ShardOpener,
        fetch_full: FullFetch,
    ) -> None:
        self.channel, self.subdir, self.retries = channel, subdir, retries
        self.opener = opener
        self._fetch_full = fetch_full
        self.session: ShardSession | None = None
        self.not_modified: NotModified | None = None  # the shard index was not modified
        self.result: NotModified | Fetched | None = None  # repodata.json's answer
        self.full: UpstreamRepodata | None = None
        self.transferred_bytes = 0
        self._by_name: dict[str, list[msgspec.Raw]] | None = None

    @property
    def sharded(self) -> bool:
        return self.session is not None

    def open_shards(self, memory: Remembered) -> bool:
        """Open the shard index and load the channel's own names; False: use repodata.json."""
        opened = self.opener.open(memory.previous)
        if isinstance(opened, NotModified):  # a closure needs the records all the same
            self.not_modified = opened
            opened = self.opener.open(opened.validators, from_cache=True)
        if not isinstance(opened, ShardSession):
            return False
        self.session = opened
        self.load(own_names(self.channel, opened.index))
        return self.session is not None

    def use_full(self) -> None:
        self.result, self.full = self._fetch_full()
        if isinstance(self.result, Fetched):
            self.transferred_bytes += self.result.transferred_bytes

    def load(self, names: Iterable[str]) -> None:
        """Load the shards of `names`; a shard that cannot be had switches to repodata.json."""
        if self.session is None:
            return
        try:
            self.session.load(names)
        except ShardError as exc:
            if self.opener.forced:
                raise
            log.warning("%s: %s", self.opener.label, exc)
            self.transferred_bytes += self.session.transferred_bytes
            self.session = None
            self.use_full()

    def repodata(self) -> UpstreamRepodata:
        if self.session is not None:
            return self.session.repodata()
        assert self.full is not None
        return self.full

    def names_matching(self, specs: Sequence[Spec]) -> set[str]:
        return set(names_for_specs(self.all_names(), specs).names)

    def all_names(self) -> set[str]:
        if self.session is not None:
            return set(self.session.index.shards)
        return set(self._names())

    def dependency_names(self, names: Iterable[str]) -> set[str]:
        """The names the records of `names` depend on (virtual packages left out)."""
        found: set[str] = set()
        if self.session is not None:
            shards = self.session.shards
            for name in names:
                if name in shards:
                    found |= shards[name].dependency_names
            return found
        by_name = self._names()
        for name in names:
            for raw in by_name.get(name, ()):
                try:
                    specs = msgspec.json.decode(raw, type=_Depends).depends
                except (msgspec.ValidationError, msgspec.DecodeError):
                    continue
                found.update(n for n in map(dependency_name, specs) if n)
        return found

    def _names(self) -> dict[str, list[msgspec.Raw]]:
        if self._by_name is None:
            self._by_name = {}
            for filename, (_, raw) in self.repodata().entries.items():
                self._by_name.setdefault(name_from_filename(filename) or "", []).append(raw)
            self._by_name.pop("", None)
        return self._by_name

    def prefetched(self) -> Prefetched:
        """What the subdir sync gets; remembers the source. Shards no longer needed leave the
        cache here: every closure has loaded what it needs."""
        session = self.session
        if session is None:
            assert self.result is not None and self.full is not None
            self.opener.remember(FULL, self.transferred_bytes)
            return Prefetched(self.result, self.full, self.retries, FULL, self.transferred_bytes)
        session.finish()
        moved = self.transferred_bytes + session.transferred_bytes
        self.opener.remember(SHARDS, moved)
        log.info("%s: records from upstream shards: %s", self.opener.label, session.summary())
        repodata = session.repodata()
        result = self.not_modified or Fetched(
            repodata, session.validators, zst_missing=False, transferred_bytes=moved
        )
        return Prefetched(result, repodata, self.retries, SHARDS, moved)
