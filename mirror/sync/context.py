"""What every part of a sync shares: its options, its context (the outside world, passed in),
the channel's upstream opened with its token, and what the last run remembered about it."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from mirror.adapters.catalog import Catalog, UpstreamState
from mirror.adapters.store import ChannelTree
from mirror.adapters.upstream import Upstream, Validators, open_upstream
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.secrets import Redactor
from mirror.errors import MirrorError
from mirror.progress import NoProgress, Progress


@dataclass(frozen=True)
class SyncOptions:
    channels: tuple[str, ...] = ()  # empty = all configured
    subdirs: tuple[str, ...] = ()  # empty = each channel's configured subdirs
    dry_run: bool = False
    allow_mass_delete: bool = False
    allow_mass_replace: bool = False
    final_zst: bool = False  # recompress published .zst at the final level before returning
    # the daemon: each channel has its own worker, so a closure that pins files into another
    # channel leaves them for that channel's own sync instead of writing its tree from here
    only_named: bool = False


@dataclass
class SyncContext:
    """Everything a sync needs from outside, passed in (no globals)."""

    config: MirrorConfig
    tree: ChannelTree
    catalog: Catalog
    http: httpx.Client | None  # None when no upstream is http(s)
    redactor: Redactor
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Progress = field(default_factory=NoProgress)
    env: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    # the daemon publishes queued drops here: they never wait for a whole channel's sync
    between_subdirs: Callable[[], None] = lambda: None


def open_channel_upstream(
    ctx: SyncContext, channel: ChannelConfig, on_retry: Callable[[str], None]
) -> Upstream:
    """The channel's upstream, with its token (which the redactor learns before any request)."""
    token = None
    if channel.token_env:
        token = ctx.env.get(channel.token_env)
        if not token:
            raise MirrorError(
                f"{channel.name}: token_env names ${channel.token_env}, which is not set"
            )
        ctx.redactor.add([token])
    return open_upstream(
        channel.upstream or "",
        http=ctx.http,
        settings=channel.transfer,
        bearer_token=token,
        redactor=ctx.redactor,
        stop=ctx.stop,
        max_repodata_bytes=ctx.config.max_repodata_bytes,
        on_retry=on_retry,
    )


def upstream_key(channel: ChannelConfig) -> str:
    """What remembered validators belong to: a changed upstream URL invalidates them."""
    return hashlib.sha256((channel.upstream or "").encode()).hexdigest()


@dataclass(frozen=True)
class Remembered:
    """What the last run stored about a subdir's upstream, as a conditional fetch needs it."""

    state: UpstreamState | None
    previous: Validators | None
    skip_zst: bool


def remembered(ctx: SyncContext, channel: ChannelConfig, subdir: str) -> Remembered:
    state = ctx.catalog.upstream_state(channel.name, subdir)
    if state is not None and state.upstream_key != upstream_key(channel):
        state = None  # the upstream URL changed: nothing we remember applies
    previous = Validators(state.variant, state.etag, state.last_modified) if state else None
    skip_zst = bool(state and state.zst_missing_until and state.zst_missing_until > ctx.clock())
    return Remembered(state, previous, skip_zst)
