"""The closure part of a channel's config: `dependencies:`, `lockfiles:` and `check:`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mirror.config.model import DEPENDENCY_MODES, ChannelConfig, CheckSettings, DependencySettings
from mirror.config.yaml_view import YamlView
from mirror.core.closure import split_virtual_package
from mirror.core.specs import Spec
from mirror.errors import SpecError

DEPENDENCY_KEYS = ("mode", "platforms", "variants", "virtual_packages", "channels")
CHECK_KEYS = ("specs", "platforms")
_SUBDIR = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def read_dependencies(view: YamlView, subdirs: tuple[str, ...]) -> DependencySettings:
    """`dependencies: solve` or a mapping with `mode:` and the rest."""
    if isinstance(view.node, yaml.ScalarNode):
        return DependencySettings(mode=_mode(view))
    fields = view.mapping(DEPENDENCY_KEYS)
    if "mode" not in fields:
        raise view.error(f"missing 'mode' (one of {', '.join(DEPENDENCY_MODES)})")
    platforms = _platforms(fields["platforms"], subdirs) if "platforms" in fields else ()
    variants: tuple[tuple[str, ...], ...] = ((),)
    if "variants" in fields:
        variants = tuple(_variant(item) for item in fields["variants"].sequence()) or ((),)
    virtual: list[tuple[str, tuple[str, ...]]] = []
    if "virtual_packages" in fields:
        for platform, item in fields["virtual_packages"].mapping().items():
            if not _SUBDIR.fullmatch(platform):
                raise item.error(f"'{platform}' is not a platform such as linux-64")
            texts = tuple(item.string_list())
            for text in texts:
                try:
                    split_virtual_package(text)
                except SpecError as exc:
                    raise item.error(str(exc)) from None
            virtual.append((platform, texts))
    channels = tuple(fields["channels"].string_list()) if "channels" in fields else ()
    return DependencySettings(
        mode=_mode(fields["mode"]),
        platforms=platforms,
        variants=variants,
        virtual_packages=tuple(virtual),
        channels=channels,
    )


def read_check(view: YamlView, subdirs: tuple[str, ...]) -> CheckSettings | None:
    """`check: true`, `check: false` or a mapping with `specs:` and `platforms:`."""
    if isinstance(view.node, yaml.ScalarNode):
        return CheckSettings() if view.boolean() else None
    fields = view.mapping(CHECK_KEYS)
    specs = (
        tuple(_solvable(item) for item in fields["specs"].sequence()) if "specs" in fields else ()
    )
    platforms = _platforms(fields["platforms"], subdirs) if "platforms" in fields else ()
    return CheckSettings(specs=specs, platforms=platforms)


def read_lockfiles(view: YamlView, base: Path) -> tuple[Path, ...]:
    paths = []
    for item in view.sequence():
        path = Path(item.string()).expanduser()
        path = path if path.is_absolute() else (base / path)
        if not path.is_file():
            raise item.error(f"lockfile {path} does not exist (or is not a file)")
        paths.append(path.absolute())
    return tuple(paths)


def check_closure_settings(channels: tuple[ChannelConfig, ...], views: dict[str, YamlView]) -> None:
    """Cross-channel rules: resolution channels exist and are mirrored; solve roots solve."""
    names = {c.name: c for c in channels}
    for channel in channels:
        view = views[channel.name]
        for other in channel.dependencies.channels:
            target = names.get(other)
            if target is None or not target.mirrored or other == channel.name:
                raise view.error(
                    f"dependencies.channels names '{other}', which is not another mirrored "
                    "channel of this config"
                )
        checks_include = channel.check is not None and not channel.check.specs
        if channel.dependencies.mode == "solve" or checks_include:
            for spec in channel.filters.include:
                problem = _not_solvable(spec)
                if problem:
                    raise view.error(
                        f"include '{spec.text}' cannot be solved for ({problem}); with "
                        "dependencies: solve or check:, include specs must name packages exactly"
                    )


def _mode(view: YamlView) -> str:
    mode = view.string()
    if mode not in DEPENDENCY_MODES:
        raise view.error(f"expected one of {', '.join(DEPENDENCY_MODES)}, got {mode!r}")
    return mode


def _platforms(view: YamlView, subdirs: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for item in view.sequence():
        platform = item.string()
        if platform == "noarch" or platform not in subdirs:
            raise item.error(
                f"platform '{platform}' must be one of this channel's subdirs other than noarch "
                f"({', '.join(s for s in subdirs if s != 'noarch') or 'none'})"
            )
        out.append(platform)
    return tuple(out)


def _variant(view: YamlView) -> tuple[str, ...]:
    items = [view] if isinstance(view.node, yaml.ScalarNode) else view.sequence()
    return tuple(_solvable(item) for item in items)


def _solvable(view: YamlView) -> str:
    from rattler import MatchSpec

    text = view.string()
    try:
        MatchSpec(text)
    except Exception as exc:  # rattler's own exception types
        raise view.error(f"invalid spec {text!r}: {exc}") from None
    return text


def _not_solvable(spec: Spec) -> str | None:
    if any(ch in spec.name_pattern for ch in "*?["):
        return "a name glob"
    if spec.license_globs or spec.license_family_globs:
        return "a licence key"
    return None
