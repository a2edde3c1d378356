"""The guards' keys: at top level for every channel, overridable per mirrored channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from mirror.config.yaml_view import YamlView
from mirror.core.guards import GuardLimits

GUARD_KEYS = ("max_delete_fraction", "max_replace_fraction", "guard_window_days")
MAX_WINDOW_DAYS = 366.0


def read_guards(fields: Mapping[str, YamlView], defaults: GuardLimits) -> GuardLimits:
    """The limits these keys set on top of `defaults` (the top level's, or the built-in ones)."""
    limits = defaults
    if "max_delete_fraction" in fields:
        limits = replace(limits, max_delete_fraction=fields["max_delete_fraction"].number(0.0, 1.0))
    if "max_replace_fraction" in fields:
        fraction = fields["max_replace_fraction"].number(0.0, 1.0)
        limits = replace(limits, max_replace_fraction=fraction)
    if "guard_window_days" in fields:
        days = fields["guard_window_days"].number(0.0, MAX_WINDOW_DAYS)
        limits = replace(limits, window_days=days)
    return limits
