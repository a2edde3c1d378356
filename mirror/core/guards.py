"""The guards of a subdir's sync, per run and over time: mass deletion and mass replacement.

An upstream that suddenly lists nothing (or a filter typo) would wipe the mirror in one run; one
that drops a few files every run would do it over a week; one that changes the bytes behind
names already published is a supply-chain red flag. Each guard compares what this run would do,
plus what runs did within the window since the last run someone accepted, with the files the
subdir publishes; past the limit, the subdir is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXAMPLES = 5  # file names a message shows


@dataclass(frozen=True)
class GuardLimits:
    max_delete_fraction: float = 0.10
    max_replace_fraction: float = 0.02
    window_days: float = 7.0


@dataclass(frozen=True)
class RecentChanges:
    """What runs within the window did (since the last run someone accepted with a flag)."""

    deleted: int = 0
    replaced: int = 0


@dataclass(frozen=True)
class GuardVerdict:
    kind: str  # "delete" or "replace"
    message: str
    flag: str  # the command-line flag that accepts it once

    @property
    def name(self) -> str:
        return "mass-deletion" if self.kind == "delete" else "mass-replacement"


def check_guards(
    *,
    published: int,
    deleting: Sequence[str],
    replacing: Sequence[str],
    recent: RecentChanges,
    limits: GuardLimits,
    allow_delete: bool = False,
    allow_replace: bool = False,
) -> GuardVerdict | None:
    """Why this run must not go on, or None. `published` is the number of files the subdir
    publishes now; `deleting` and `replacing` name the files this run would delete and the
    published files whose bytes it would change."""
    if not allow_replace:
        verdict = _verdict(
            "replace", replacing, recent.replaced, published, limits.max_replace_fraction, limits
        )
        if verdict is not None:
            return verdict
    if not allow_delete:
        return _verdict(
            "delete", deleting, recent.deleted, published, limits.max_delete_fraction, limits
        )
    return None


def _verdict(
    kind: str,
    now: Sequence[str],
    before: int,
    published: int,
    limit: float,
    limits: GuardLimits,
) -> GuardVerdict | None:
    if not now:
        return None
    # the base is what was published at the start of the window: deleted files counted back in
    base = published + (before if kind == "delete" else 0)
    if base == 0:
        return None
    share_run = len(now) / base
    share_window = (len(now) + before) / base
    if share_run <= limit and share_window <= limit:
        return None
    flag = "--allow-mass-delete" if kind == "delete" else "--allow-mass-replace"
    setting = "max_delete_fraction" if kind == "delete" else "max_replace_fraction"
    verb = "delete" if kind == "delete" else "change the bytes of"
    what = (
        f"this run would {verb} {len(now)} of {base} published files ({share_run:.0%}"
        if share_run > limit
        else f"this run would {verb} {len(now)} more published files, {len(now) + before} of "
        f"{base} within {limits.window_days:g} days ({share_window:.0%}"
    )
    shown = ", ".join(sorted(now)[:EXAMPLES]) + (", ..." if len(now) > EXAMPLES else "")
    why = (
        "upstream replaced files under the same names, a supply-chain red flag"
        if kind == "replace"
        else "an upstream listing nothing, or a filter typo, would wipe the mirror"
    )
    message = (
        f"{what}, limit {limit:.0%}): {shown}; nothing was changed ({why}). If this is "
        f"expected, run once with {flag} or raise {setting}"
    )
    return GuardVerdict(kind, message, flag)
