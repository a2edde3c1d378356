"""A package published in both formats: do its .conda and .tar.bz2 records say the same thing?

Clients pick one of the two (conda prefers the .conda), so twins whose metadata differs install
differently depending on the client and its settings: worth a warning, never silence."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from mirror.core.records import CONDA_EXT, TAR_BZ2_EXT, split_extension

# what decides what a client installs; hashes, sizes and timestamps differ between formats
COMPARED = (
    "build_number",
    "constrains",
    "depends",
    "features",
    "license",
    "noarch",
    "subdir",
    "track_features",
)


def twin_of(filename: str) -> str | None:
    """The other format's file name of the same name-version-build."""
    stem, ext = split_extension(filename)
    if ext == CONDA_EXT:
        return stem + TAR_BZ2_EXT
    if ext == TAR_BZ2_EXT:
        return stem + CONDA_EXT
    return None


def differences(a: bytes, b: bytes) -> tuple[str, ...]:
    """The compared keys whose values differ between two records (unreadable: none)."""
    try:
        left, right = msgspec.json.decode(a), msgspec.json.decode(b)
    except msgspec.DecodeError:
        return ()
    if not isinstance(left, dict) or not isinstance(right, dict):
        return ()
    return tuple(key for key in COMPARED if _normal(left.get(key)) != _normal(right.get(key)))


def _normal(value: object) -> object:
    """Order does not matter in depends/constrains lists; absent and empty are the same."""
    if isinstance(value, list):
        return sorted(map(str, value))
    return value if value not in ("", None) else None


def disagreeing_twins(
    records: Iterable[tuple[str, bytes]], lookup: dict[str, bytes]
) -> list[tuple[str, str, tuple[str, ...]]]:
    """(file, its twin, differing keys) for each record whose twin in `lookup` disagrees."""
    found = []
    for filename, raw in records:
        twin = twin_of(filename)
        if twin is None or twin not in lookup or filename > twin:
            continue  # each pair once
        keys = differences(raw, lookup[twin])
        if keys:
            found.append((filename, twin, keys))
    return found
