"""The effective configuration as frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mirror.core.bucket_location import BucketLocation
from mirror.core.filters import FilterRules
from mirror.core.guards import GuardLimits
from mirror.core.secrets import redact_url
from mirror.core.watch_modes import WatchMode
from mirror.errors import UsageError


@dataclass(frozen=True)
class TransferSettings:
    """How a channel's upstream is talked to. Set at top level, overridable per channel."""

    workers: int = 4  # requests at once to a host when a sync starts (file://: always)
    retries: int = 4
    retry_backoff_s: float = 1.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0
    max_connections_per_host: int = 32  # the adaptive limit never goes above it
    max_retry_after_s: float = 300.0  # a longer Retry-After is cut to this


@dataclass(frozen=True)
class IndexSettings:
    """Which index files to write per subdir. Set under `index:` at top level, overridable per
    channel. run_exports.json and channeldata.json need the packages' own info/, which only
    local packages give: None means "when every record has it"."""

    zst: bool = True
    bz2: bool = False
    shards: bool = True
    current_repodata: bool = False
    run_exports: bool | None = None  # None: on for channels without an upstream
    channeldata: bool | None = None
    shard_grace_days: float = 7.0
    patch_instructions: Path | None = None  # a .json, a folder of <subdir>/..., or a package
    deep_scan: bool = False  # read every member of packages found in the tree, not only info/


@dataclass(frozen=True)
class Schedule:
    """When the daemon syncs a mirrored channel: a cron expression or an interval."""

    cron: str | None = None
    interval_minutes: float | None = None
    jitter_s: float = 0.0
    at_start: bool = False  # also sync once when the daemon starts


@dataclass(frozen=True)
class ServiceSettings:
    """The daemon's own knobs (the top-level `metrics:` and `watch:` keys)."""

    metrics_host: str | None = None  # None: no metrics endpoint
    metrics_port: int = 9184
    settle_s: float = 1.0  # a dropped file without a close event must keep its size this long
    debounce_s: float = 0.3  # drops arriving within this window are published together
    recompress_after_s: float = 300.0  # quiet time before .zst is recompressed at the final level
    watch_mode: WatchMode = WatchMode.AUTO  # drop folders: events, poll, or by filesystem type
    poll_interval_s: float = 5.0  # between two snapshots of a polled drop folder


@dataclass(frozen=True)
class DropFolder:
    """A folder whose complete package files the daemon publishes, and how it is watched
    (the top-level `watch:` values unless the folder overrides them)."""

    path: Path
    mode: WatchMode = WatchMode.AUTO
    poll_interval_s: float = 5.0


@dataclass(frozen=True)
class BundleSettings:
    """Export bundles for offline sites (the top-level `bundles:` key)."""

    outbox: Path | None = None  # daemon: write a bundle here after each sync that changed files
    split_size: int | None = None  # parts no larger than this (None: one part)
    sign_command: tuple[str, ...] = ()  # e.g. gpg --detach-sign -o {signature} {manifest}
    verify_command: tuple[str, ...] = ()  # run by `mirror import` before anything else


DEPENDENCY_MODES = ("none", "solve", "all")
# where a mirrored subdir's records come from: the upstream's CEP-16 shards when it offers them
# and the channel selects by name (auto), always shards, or always repodata.json
REPODATA_SOURCES = ("auto", "shards", "full")


@dataclass(frozen=True)
class DependencySettings:
    """How a channel's selection grows to what its include specs need (`dependencies:`).

    `solve`: the union of py-rattler solutions of the include specs, per platform and variant.
    `all`: every available record matching a dependency spec of a selected record, transitively.
    """

    mode: str = "none"
    platforms: tuple[str, ...] = ()  # () = the channel's subdirs other than noarch
    variants: tuple[tuple[str, ...], ...] = ((),)  # extra specs per solve, e.g. python 3.12.*
    virtual_packages: tuple[tuple[str, tuple[str, ...]], ...] = ()  # per platform; () = defaults
    channels: tuple[str, ...] = ()  # other configured channels to resolve from, by priority

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def virtual_packages_for(self, platform: str) -> tuple[str, ...] | None:
        return dict(self.virtual_packages).get(platform)


@dataclass(frozen=True)
class CheckSettings:
    """The solvability check run against the published tree after every sync (`check:`)."""

    specs: tuple[str, ...] = ()  # () = the include specs, once per dependency variant
    platforms: tuple[str, ...] = ()  # () = the dependency platforms


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    upstream: str | None  # http(s):// or file:// URL; None for a channel fed only by drops
    token_env: str | None  # name of the environment variable holding a bearer token
    subdirs: tuple[str, ...]
    filters: FilterRules
    transfer: TransferSettings
    guards: GuardLimits = field(default_factory=GuardLimits)
    index: IndexSettings = IndexSettings()
    schedule: Schedule | None = None
    drop_folders: tuple[DropFolder, ...] = ()
    dependencies: DependencySettings = DependencySettings()
    lockfiles: tuple[Path, ...] = ()
    check: CheckSettings | None = None  # None: no solvability check
    repodata_source: str = "auto"  # one of REPODATA_SOURCES

    @property
    def mirrored(self) -> bool:
        return self.upstream is not None

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms closures and checks solve for."""
        if self.dependencies.platforms:
            return self.dependencies.platforms
        return tuple(s for s in self.subdirs if s != "noarch") or ("noarch",)

    @property
    def shown_upstream(self) -> str:
        return redact_url(self.upstream) if self.upstream else "(none)"


@dataclass(frozen=True)
class StorageSettings:
    """For a tree in an object store: how long the writer lease binds between renewals (a
    writer that dies frees the tree after this long), and how many uploads run at once."""

    lease_ttl_s: float = 60.0
    max_uploads: int = 8


@dataclass(frozen=True)
class MirrorConfig:
    """`root` is the published tree's directory (<root>/<channel>/<subdir>/) or, when the
    tree lives in an object store, None and `bucket` says where."""

    source: Path  # the file this was read from
    root: Path | None
    state_dir: Path  # catalog, lock, upstream cache, temp: never inside root, always local
    channels: tuple[ChannelConfig, ...]
    free_space_margin_bytes: int
    max_repodata_bytes: int
    service: ServiceSettings = ServiceSettings()
    bundles: BundleSettings = BundleSettings()
    bucket: BucketLocation | None = None
    storage: StorageSettings = StorageSettings()

    @property
    def tree_location(self) -> str:
        """The tree's root as messages show it: a path, or s3://bucket/prefix."""
        return self.bucket.url if self.bucket is not None else str(self.root)

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)

    def check_channels(self, names: list[str]) -> list[str]:
        """`names` if each is a configured channel, else a UsageError naming the others."""
        unknown = [n for n in names if self.channel(n) is None]
        if unknown:
            known = ", ".join(c.name for c in self.channels)
            raise UsageError(
                f"no channel named {', '.join(unknown)} in {self.source} (have: {known})"
            )
        return names


def describe(
    config: MirrorConfig, watched: Mapping[tuple[str, int], str] | None = None
) -> dict[str, object]:
    """The effective configuration as plain data, secrets masked (for `mirror check-config`).
    `watched`: how each drop folder (channel, index) is watched, decided outside the config."""
    return {
        "source": str(config.source),
        "root": config.tree_location,
        "storage": (
            {
                "endpoint_url": redact_url(config.bucket.endpoint_url)
                if config.bucket.endpoint_url
                else None,
                "region": config.bucket.region,
                "addressing": config.bucket.addressing,
                "lease_ttl_s": config.storage.lease_ttl_s,
                "max_uploads": config.storage.max_uploads,
            }
            if config.bucket is not None
            else None
        ),
        "state_dir": str(config.state_dir),
        "free_space_margin_bytes": config.free_space_margin_bytes,
        "max_repodata_bytes": config.max_repodata_bytes,
        "metrics": (
            f"{config.service.metrics_host}:{config.service.metrics_port}"
            if config.service.metrics_host
            else None
        ),
        "watch": {
            "settle_s": config.service.settle_s,
            "debounce_s": config.service.debounce_s,
            "mode": str(config.service.watch_mode),
            "poll_interval_s": config.service.poll_interval_s,
        },
        "recompress_after_s": config.service.recompress_after_s,
        "bundles": {
            "outbox": str(config.bundles.outbox) if config.bundles.outbox else None,
            "split_size": config.bundles.split_size,
            "sign_command": list(config.bundles.sign_command),
            "verify_command": list(config.bundles.verify_command),
        },
        "channels": {c.name: _describe_channel(c, watched or {}) for c in config.channels},
    }


def _describe_channel(
    channel: ChannelConfig, watched: Mapping[tuple[str, int], str]
) -> dict[str, object]:
    rules = channel.filters
    described: dict[str, object] = {
        "upstream": channel.shown_upstream,
        "token_env": channel.token_env,
        "subdirs": list(channel.subdirs),
        "include": [s.text for s in rules.include] or "everything",
        "exclude": [s.text for s in rules.exclude],
        "licenses": {"allow": list(rules.license_allow), "deny": list(rules.license_deny)},
        "not_older_than_ms": rules.not_older_than_ms,
        "not_newer_than_ms": rules.not_newer_than_ms,
        "max_age_days": rules.max_age_days,
        "cooldown_days": rules.cooldown_days,
        "max_package_size_bytes": rules.max_package_size_bytes,
        "keep_latest": rules.keep_latest,
        "prefer_conda": rules.prefer_conda,
        "max_delete_fraction": channel.guards.max_delete_fraction,
        "max_replace_fraction": channel.guards.max_replace_fraction,
        "guard_window_days": channel.guards.window_days,
        "repodata_source": channel.repodata_source,
        "transfer": vars(channel.transfer).copy(),
        "index": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(channel.index).items()
        },
        "schedule": vars(channel.schedule).copy() if channel.schedule else None,
        "drop_folders": [
            {
                "path": str(f.path),
                "mode": str(f.mode),
                "poll_interval_s": f.poll_interval_s,
                "watched_by": watched.get((channel.name, i), "decided when the daemon starts"),
            }
            for i, f in enumerate(channel.drop_folders)
        ],
        "dependencies": {
            "mode": channel.dependencies.mode,
            "platforms": list(channel.platforms),
            "variants": [list(v) for v in channel.dependencies.variants],
            "virtual_packages": {k: list(v) for k, v in channel.dependencies.virtual_packages},
            "channels": list(channel.dependencies.channels),
        },
        "lockfiles": [str(p) for p in channel.lockfiles],
        "check": vars(channel.check).copy() if channel.check else None,
    }
    return described
