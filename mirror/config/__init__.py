"""Configuration: YAML file -> frozen dataclasses (keys in load.py, values in model.py).

The loader is imported on first use, so commands that need only the value types (such as
`mirror index`) do not pay for YAML parsing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mirror.config.model import ChannelConfig, MirrorConfig, TransferSettings

if TYPE_CHECKING:
    from mirror.config.load import CONFIG_ENV, load_config, resolve_config_path

__all__ = [
    "CONFIG_ENV",
    "ChannelConfig",
    "MirrorConfig",
    "TransferSettings",
    "load_config",
    "resolve_config_path",
]


def __getattr__(name: str) -> Any:
    if name in ("CONFIG_ENV", "load_config", "resolve_config_path"):
        from mirror.config import load

        return getattr(load, name)
    raise AttributeError(name)
