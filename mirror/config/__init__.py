"""Configuration: YAML file -> frozen dataclasses (see load.py for the keys)."""

from mirror.config.load import CONFIG_ENV, load_config, resolve_config_path
from mirror.config.model import ChannelConfig, MirrorConfig, TransferSettings

__all__ = [
    "CONFIG_ENV",
    "ChannelConfig",
    "MirrorConfig",
    "TransferSettings",
    "load_config",
    "resolve_config_path",
]
