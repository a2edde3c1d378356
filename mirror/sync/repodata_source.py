"""Where a subdir's upstream records come from: the upstream's CEP-16 shards (only the names
the rules reach) or its repodata.json(.zst), and the memory of which one was used.

`auto` takes shards when the upstream offers a shard index and the channel selects by name
(include specs, a closure, lockfiles); a channel that mirrors everything reads repodata.json,
which is smaller than every shard together. An upstream without an index (404) is remembered
and not asked again for a day; a broken index, a shard that fails its hash or is missing make
this run of the subdir read repodata.json instead. `shards` forces the shard path (failing
when it cannot be had); `full` never takes it.
"""

from __future__ import annotations

import logging

from mirror.adapters.catalog import RepodataSourceState
from mirror.adapters.upstream import Fetched, FetchedBytes, NotModified, Upstream, Validators
from mirror.config.model import ChannelConfig
from mirror.core.secrets import redact_url
from mirror.core.shard_names import names_for_specs
from mirror.core.shards import SHARD_INDEX_NAME
from mirror.core.upstream_shards import MAX_INDEX_BYTES, ShardIndex, parse_shard_index
from mirror.errors import ShardError, UpstreamError
from mirror.sync.context import Remembered, SyncContext, upstream_key
from mirror.sync.shard_cache import ShardCache
from mirror.sync.shard_session import ShardSession

log = logging.getLogger(__name__)

SHARDS = "shards"
FULL = "full"
INDEX_MISSING_RECHECK_S = 24 * 3600.0  # how long to believe an upstream has no shard index


def selects_by_name(channel: ChannelConfig) -> bool:
    """Does the channel's selection start from package names (not from every record)?"""
    if channel.filters.include:
        return True
    if channel.dependencies.mode == "all":  # without include specs, every name is a root
        return False
    return bool(channel.lockfiles) or channel.dependencies.mode == "solve"


def wants_shards(channel: ChannelConfig) -> bool:
    if channel.repodata_source == "full":
        return False
    return channel.repodata_source == SHARDS or selects_by_name(channel)


def own_names(channel: ChannelConfig, index: ShardIndex) -> set[str]:
    """The names the channel's own include specs reach in an index (all of them when it has
    none, which only `repodata_source: shards` leads to)."""
    if not channel.filters.include:
        return set(index.shards)
    return set(names_for_specs(index.shards, channel.filters.include).names)


class ShardOpener:
    """Opens one subdir's shard index and remembers what came of it (catalog: repodata_source)."""

    def __init__(
        self, ctx: SyncContext, channel: ChannelConfig, subdir: str, upstream: Upstream
    ) -> None:
        self.ctx, self.channel, self.subdir, self.upstream = ctx, channel, subdir, upstream
        self.label = f"{channel.name}/{subdir}"
        self.cache = ShardCache(ctx.config.state_dir, channel.name, subdir)
        state = ctx.catalog.repodata_source_state(channel.name, subdir)
        if state is not None and state.upstream_key != upstream_key(channel):
            state = None  # another upstream: what we remember does not apply
        self.index_missing_until = state.index_missing_until if state else None

    @property
    def forced(self) -> bool:
        return self.channel.repodata_source == SHARDS

    def open(
        self, previous: Validators | None, *, from_cache: bool = False
    ) -> ShardSession | NotModified | None:
        """The index as a session; NotModified when upstream says so to a conditional request
        (`previous` of the index); None when this run must read repodata.json. With
        `from_cache`, the index answered "not modified" before: its cached body is used."""
        known_missing = self.index_missing_until and self.index_missing_until > self.ctx.clock()
        if known_missing and not self.forced:
            return None
        url = self.upstream.file_url(self.subdir, SHARD_INDEX_NAME)
        shown = self.ctx.redactor(redact_url(url))
        cached = self.cache.index() if from_cache and previous is not None else None
        transferred = 0
        if cached is not None and previous is not None:
            data, validators = cached, previous
        else:  # no cached body after a 304: ask again, unconditionally
            usable = previous is not None and previous.variant == SHARD_INDEX_NAME
            conditional = previous if usable and not from_cache else None
            got = self._fetch_index(url, shown, conditional)
            if got is None or isinstance(got, NotModified):
                return got
            data, validators, transferred = got.data, got.validators, len(got.data)
        try:
            index = parse_shard_index(data, source=shown)
        except ShardError as exc:
            if self.forced:
                raise
            log.warning("%s: %s", self.label, exc)
            return None
        if transferred:
            self.cache.put_index(data)
        return ShardSession(
            label=self.label,
            subdir=self.subdir,
            upstream=self.upstream,
            index=index,
            index_url=url,
            validators=validators,
            cache=self.cache,
            workers=self.channel.transfer.workers,
            redact=self.ctx.redactor,
            transferred_bytes=transferred,
        )

    def _fetch_index(
        self, url: str, shown: str, previous: Validators | None
    ) -> FetchedBytes | NotModified | None:
        try:
            got = self.upstream.fetch_small(url, previous, MAX_INDEX_BYTES)
        except UpstreamError as exc:
            if exc.reason != "not_found":
                raise
            if self.forced:
                raise UpstreamError(
                    f"{self.label}: repodata_source is 'shards', but upstream has no shard index "
                    f"({shown}: 404); set repodata_source to auto or full",
                    reason="no_shard_index",  # not "not_found": the subdir itself may exist
                    retryable=False,
                ) from None
            log.info(
                "%s: upstream offers no shard index (%s); reading repodata.json, and not "
                "asking for the index again for %.0f h",
                self.label,
                shown,
                INDEX_MISSING_RECHECK_S / 3600,
            )
            self.index_missing_until = self.ctx.clock() + INDEX_MISSING_RECHECK_S
            return None
        self.index_missing_until = None
        return got

    def remember(self, source: str, transferred_bytes: int) -> None:
        state = RepodataSourceState(
            upstream_key=upstream_key(self.channel),
            source=source,
            repodata_bytes=transferred_bytes,
            index_missing_until=self.index_missing_until,
        )
        with self.ctx.catalog.transaction():
            self.ctx.catalog.save_repodata_source_state(self.channel.name, self.subdir, state)


class RepodataSource:
    """One subdir sync's upstream records: `fetch` answers as `Upstream.fetch_repodata` does,
    through shards or repodata.json; `kind` and `transferred_bytes` say which and how much."""

    def __init__(
        self,
        ctx: SyncContext,
        channel: ChannelConfig,
        subdir: str,
        upstream: Upstream,
        memory: Remembered,
    ) -> None:
        self.upstream, self.subdir, self.channel = upstream, subdir, channel
        self.skip_zst = memory.skip_zst
        self.opener = ShardOpener(ctx, channel, subdir, upstream)
        self.kind = SHARDS if wants_shards(channel) else FULL
        self.transferred_bytes = 0
        self._index_not_modified = False
        self._last_validators: Validators | None = None

    def fetch(self, previous: Validators | None) -> NotModified | Fetched:
        """Conditionally when `previous` is given; after a NotModified, `fetch(None)` gives the
        records (from the cached index and shards where they still match)."""
        if self.kind == SHARDS:
            result = self._through_shards(previous)
            if result is not None:
                self.opener.remember(SHARDS, self.transferred_bytes)
                return result
            self.kind = FULL
        result = self.upstream.fetch_repodata(self.subdir, previous, self.skip_zst)
        if isinstance(result, Fetched):
            self.transferred_bytes += result.transferred_bytes
        self.opener.remember(FULL, self.transferred_bytes)
        return result

    def _through_shards(self, previous: Validators | None) -> NotModified | Fetched | None:
        from_cache = self._index_not_modified and previous is None
        opened = self.opener.open(previous or self._last_validators, from_cache=from_cache)
        if isinstance(opened, NotModified):
            self._index_not_modified = True
            self._last_validators = opened.validators
            return opened
        if opened is None:
            return None
        try:
            opened.load(own_names(self.channel, opened.index))
        except ShardError as exc:
            if self.opener.forced:
                raise
            log.warning("%s: %s", self.opener.label, exc)
            self.transferred_bytes += opened.transferred_bytes
            return None
        opened.finish()
        self.transferred_bytes += opened.transferred_bytes
        log.info("%s: records from upstream shards: %s", self.opener.label, opened.summary())
        return Fetched(
            opened.repodata(),
            opened.validators,
            zst_missing=False,
            transferred_bytes=opened.transferred_bytes,
        )
