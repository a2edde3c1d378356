"""Read a YAML config file into a MirrorConfig; every error names the file, line and key."""

from __future__ import annotations

import os
import re
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mirror.config.bundles import read_bundles
from mirror.config.closure import (
    check_closure_settings,
    read_check,
    read_dependencies,
    read_lockfiles,
)
from mirror.config.guards import GUARD_KEYS, read_guards
from mirror.config.model import (
    REPODATA_SOURCES,
    BundleSettings,
    ChannelConfig,
    DependencySettings,
    IndexSettings,
    MirrorConfig,
    ServiceSettings,
    TransferSettings,
)
from mirror.config.service import read_drop_folders, read_schedule, read_service
from mirror.config.storage import read_root
from mirror.config.yaml_view import YamlView, load_document
from mirror.core.filters import FilterRules
from mirror.core.guards import GuardLimits
from mirror.core.secrets import redact_url, url_secrets
from mirror.core.specs import Spec, parse_spec
from mirror.errors import SpecError

CONFIG_ENV = "MIRROR_CONFIG"
DEFAULT_CONFIG = Path("/etc/mirror/config.yaml")

_TRANSFER_KEYS = tuple(f.name for f in dataclass_fields(TransferSettings))
_TOP_KEYS = (
    "root",
    "storage",
    "state_dir",
    "channels",
    "free_space_margin",
    *GUARD_KEYS,
    "max_repodata_size",
    "index",
    "metrics",
    "watch",
    "recompress_after_s",
    "bundles",
    *_TRANSFER_KEYS,
)
# keys that only make sense with an upstream to select from and talk to
_MIRROR_ONLY = (
    "token_env",
    "include",
    "exclude",
    "licenses",
    "not_older_than",
    "not_newer_than",
    "max_age_days",
    "cooldown_days",
    "max_package_size",
    "keep_latest",
    "prefer_conda",
    *GUARD_KEYS,
    "schedule",
    "dependencies",
    "lockfiles",
    "check",
    "repodata_source",
    *_TRANSFER_KEYS,
)
_CHANNEL_KEYS = ("upstream", "subdirs", "index", "drop_folders", *_MIRROR_ONLY)
_INDEX_SWITCHES = (
    "zst",
    "bz2",
    "shards",
    "current_repodata",
    "run_exports",
    "channeldata",
    "deep_scan",
)
_INDEX_KEYS = (*_INDEX_SWITCHES, "shard_grace_days", "patch_instructions")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SUBDIR = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_config_path(given: str | None) -> Path:
    """--config, else $MIRROR_CONFIG, else /etc/mirror/config.yaml."""
    chosen = given or os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG)
    return Path(chosen).expanduser().absolute()


def load_config(path: Path) -> MirrorConfig:
    doc = load_document(path)
    top = doc.mapping(_TOP_KEYS)
    base = path.parent
    for required in ("root", "state_dir", "channels"):
        if required not in top:
            raise doc.error(f"missing required key '{required}'")
    root, bucket, storage = read_root(top["root"], top.get("storage"), base, _directory)
    state_dir = _directory(top["state_dir"], base)
    if root is not None and _overlaps(root, state_dir):
        raise top["state_dir"].error(
            f"state_dir {state_dir} and root {root} overlap; the state directory holds "
            "temporary and private files and must live outside the published tree"
        )
    defaults = _transfer(top, TransferSettings())
    index_defaults = (
        _index(top["index"], base, IndexSettings()) if "index" in top else IndexSettings()
    )
    guard_defaults = read_guards(top, GuardLimits())
    service = read_service(top)
    channels_view = top["channels"]
    entries = channels_view.mapping()
    if not entries:
        raise channels_view.error("no channels configured; add at least one under 'channels:'")
    channels = tuple(
        _channel(name, view, base, defaults, guard_defaults, index_defaults, service)
        for name, view in entries.items()
    )
    _check_drop_folders(channels, entries, root, state_dir)
    check_closure_settings(channels, entries)
    return MirrorConfig(
        source=path,
        root=root,
        bucket=bucket,
        storage=storage,
        state_dir=state_dir,
        channels=channels,
        free_space_margin_bytes=(
            top["free_space_margin"].size_bytes() if "free_space_margin" in top else 1 << 30
        ),
        max_repodata_bytes=(
            top["max_repodata_size"].size_bytes() if "max_repodata_size" in top else 4 << 30
        ),
        service=service,
        bundles=(
            read_bundles(top["bundles"], base, tuple(p for p in (root, state_dir) if p))
            if "bundles" in top
            else BundleSettings()
        ),
    )


def _check_drop_folders(
    channels: tuple[ChannelConfig, ...],
    views: dict[str, YamlView],
    root: Path | None,
    state_dir: Path,
) -> None:
    """A drop folder inside the published tree would publish half-copied files; one shared
    by two channels would make the destination a coin toss."""
    owner: dict[Path, str] = {}
    for channel in channels:
        if not channel.drop_folders:
            continue
        view = views[channel.name].mapping()["drop_folders"]
        for folder in (f.path for f in channel.drop_folders):
            for other, name in owner.items():
                if _overlaps(folder, other):
                    raise view.error(f"drop folder {folder} overlaps {other} of channel {name}")
            for private, what in ((root, "root"), (state_dir, "state_dir")):
                if private is not None and _overlaps(folder, private):
                    raise view.error(
                        f"drop folder {folder} overlaps {what} {private}; drops must arrive "
                        "outside the published tree and the state directory"
                    )
            owner[folder] = channel.name


def _channel(
    name: str,
    view: YamlView,
    base: Path,
    defaults: TransferSettings,
    guard_defaults: GuardLimits,
    index_defaults: IndexSettings,
    service: ServiceSettings,
) -> ChannelConfig:
    if not _CHANNEL_NAME.fullmatch(name):
        raise view.error(
            "a channel name becomes a folder under root: use letters, digits, '.', '_' or '-'"
        )
    fields = view.mapping(_CHANNEL_KEYS)
    upstream = _upstream(fields["upstream"], base) if "upstream" in fields else None
    if upstream is None:
        misplaced = [key for key in _MIRROR_ONLY if key in fields]
        if misplaced:
            raise fields[misplaced[0]].error(
                "only for mirrored channels; this channel has no 'upstream' (drops only)"
            )
    if "subdirs" not in fields:
        raise view.error("missing 'subdirs', e.g. subdirs: [linux-64, noarch]")
    token_env = None
    if "token_env" in fields:
        token_env = fields["token_env"].string()
        if not _ENV_NAME.fullmatch(token_env):
            raise fields["token_env"].error("expected the NAME of an environment variable")
    subdirs = _subdirs(fields["subdirs"])
    return ChannelConfig(
        name=name,
        upstream=upstream,
        token_env=token_env,
        subdirs=subdirs,
        filters=_filters(fields),
        transfer=_transfer(fields, defaults),
        guards=read_guards(fields, guard_defaults),
        index=_index(fields["index"], base, index_defaults)
        if "index" in fields
        else index_defaults,
        schedule=read_schedule(fields["schedule"]) if "schedule" in fields else None,
        drop_folders=(
            read_drop_folders(fields["drop_folders"], base, service)
            if "drop_folders" in fields
            else ()
        ),
        dependencies=(
            read_dependencies(fields["dependencies"], subdirs)
            if "dependencies" in fields
            else DependencySettings()
        ),
        lockfiles=read_lockfiles(fields["lockfiles"], base) if "lockfiles" in fields else (),
        check=read_check(fields["check"], subdirs) if "check" in fields else None,
        repodata_source=_choice(fields, "repodata_source", REPODATA_SOURCES),
    )


def _choice(fields: dict[str, YamlView], key: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first is the default)."""
    if key not in fields:
        return choices[0]
    value = fields[key].string()
    if value not in choices:
        raise fields[key].error(f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _filters(fields: dict[str, YamlView]) -> FilterRules:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    if "licenses" in fields:
        licenses = fields["licenses"].mapping(("allow", "deny"))
        allow = (
            tuple(g.lower() for g in licenses["allow"].string_list()) if "allow" in licenses else ()
        )
        deny = (
            tuple(g.lower() for g in licenses["deny"].string_list()) if "deny" in licenses else ()
        )

    def optional(key: str, read: Any) -> Any:
        return read(fields[key]) if key in fields else None

    return FilterRules(
        include=_specs(fields.get("include")),
        exclude=_specs(fields.get("exclude")),
        license_allow=allow,
        license_deny=deny,
        not_older_than_ms=optional("not_older_than", YamlView.timestamp_ms),
        not_newer_than_ms=optional("not_newer_than", YamlView.timestamp_ms),
        max_age_days=optional("max_age_days", lambda v: v.number(0.0)),
        cooldown_days=optional("cooldown_days", lambda v: v.number(0.0)),
        max_package_size_bytes=optional("max_package_size", YamlView.size_bytes),
        keep_latest=optional("keep_latest", lambda v: v.integer(1)),
        prefer_conda=fields["prefer_conda"].boolean() if "prefer_conda" in fields else True,
    )


def _specs(view: YamlView | None) -> tuple[Spec, ...]:
    if view is None:
        return ()
    specs = []
    for item in view.sequence():
        try:
            specs.append(parse_spec(item.string()))
        except SpecError as exc:
            raise item.error(f"invalid spec: {exc}") from None
    return tuple(specs)


def _transfer(fields: dict[str, YamlView], defaults: TransferSettings) -> TransferSettings:
    def pick(key: str, read: Any, fallback: Any) -> Any:
        return read(fields[key]) if key in fields else fallback

    return TransferSettings(
        workers=pick("workers", lambda v: min(v.integer(1), 64), defaults.workers),
        retries=pick("retries", lambda v: v.integer(0), defaults.retries),
        retry_backoff_s=pick("retry_backoff_s", lambda v: v.number(0.0), defaults.retry_backoff_s),
        connect_timeout_s=pick(
            "connect_timeout_s", lambda v: v.number(0.1), defaults.connect_timeout_s
        ),
        read_timeout_s=pick("read_timeout_s", lambda v: v.number(0.1), defaults.read_timeout_s),
        max_connections_per_host=pick(
            "max_connections_per_host", lambda v: v.integer(1), defaults.max_connections_per_host
        ),
        max_retry_after_s=pick(
            "max_retry_after_s", lambda v: v.number(0.0), defaults.max_retry_after_s
        ),
    )


def _index(view: YamlView, base: Path, defaults: IndexSettings) -> IndexSettings:
    fields = view.mapping(_INDEX_KEYS)
    changes: dict[str, Any] = {
        key: fields[key].boolean() for key in _INDEX_SWITCHES if key in fields
    }
    if "shard_grace_days" in fields:
        changes["shard_grace_days"] = fields["shard_grace_days"].number(0.0)
    if "patch_instructions" in fields:
        path = _local_path(fields["patch_instructions"], base)
        if not path.exists():
            raise fields["patch_instructions"].error(f"{path} does not exist")
        changes["patch_instructions"] = path
    return replace(defaults, **changes)


def _subdirs(view: YamlView) -> tuple[str, ...]:
    subdirs: list[str] = []
    for item in view.sequence():
        subdir = item.string()
        if not _SUBDIR.fullmatch(subdir):
            raise item.error(f"'{subdir}' is not a conda subdir such as linux-64 or noarch")
        if subdir in subdirs:
            raise item.error(f"subdir '{subdir}' is listed twice")
        subdirs.append(subdir)
    if not subdirs:
        raise view.error("list at least one subdir, e.g. [linux-64, noarch]")
    return tuple(subdirs)


def _upstream(view: YamlView, base: Path) -> str:
    """An http(s) URL, a file:// URL, or a path (relative to the config file)."""
    text = view.string().strip()
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL": the URL is not shown, it may hold a token
        raise view.error(
            f"not a valid URL ({exc}); an IPv6 host goes in brackets, as in "
            "http://[2001:db8::1]:8080/channel"
        ) from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        # file paths are appended to the URL, so a query or fragment could only break them,
        # and a token there would be shown unmasked: refuse, without echoing the URL
        if parts.query or parts.fragment or text.endswith(("?", "#")):
            raise view.error(
                "an upstream URL cannot have a query string or '#' fragment; put a token in "
                "/t/<token>/ or name its environment variable in token_env"
            )
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise view.error("the port in this URL is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise view.error(f"'{redact_url(text)}' has no host name")
        if any(len(secret) < 4 for secret in url_secrets(text)):
            raise view.error("the token in this URL is too short to be a real token")
        return text.rstrip("/")
    if scheme == "file":
        path = Path(unquote(urlsplit(text).path))
    elif scheme and len(scheme) > 1:
        raise view.error(f"unsupported URL scheme '{scheme}'; use http, https or file")
    else:
        path = Path(text).expanduser()
    path = path if path.is_absolute() else (base / path)
    path = path.resolve()
    if not path.is_dir():
        raise view.error(f"local upstream {path} does not exist or is not a directory")
    return path.as_uri()


def _directory(view: YamlView, base: Path) -> Path:
    """A directory mirror may create: something else in its place is a mistake to name now."""
    path = _local_path(view, base)
    if path.exists() and not path.is_dir():
        raise view.error(f"{path} exists but is not a directory; point this at a directory")
    return path


def _local_path(view: YamlView, base: Path) -> Path:
    path = Path(view.string()).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)
