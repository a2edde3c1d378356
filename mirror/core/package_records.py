"""Records of local package files, built from the package's own info/ and passed through the gate.

A record is info/index.json plus md5, sha256 and size (and run_exports when the package has
some, as rattler-index writes them), with sorted keys so the bytes are deterministic. A package
names only itself: `fn`, `url` and `channel` from its index.json are dropped (rattler-index
drops them too), so a file cannot claim another name, URL or channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from mirror.core.gate import GateCache, admit
from mirror.core.records import Refusal, RefusalReason, expected_group, split_extension

_REQUIRED_STRINGS = ("name", "version", "build")
# where a record is and what it is called is the channel's business, never the package's
FOREIGN_KEYS = frozenset({"fn", "url", "channel"})


class InvalidPackage(ValueError):
    """The package's metadata disagrees with itself or with where it was put; `gate_reason`
    is the record gate's reason (None for the checks made before it)."""

    def __init__(self, message: str, gate_reason: RefusalReason | None = None) -> None:
        super().__init__(message)
        self.gate_reason = gate_reason


def local_record(
    filename: str,
    folder_subdir: str,
    index: Mapping[str, Any],
    *,
    size: int,
    sha256: str,
    md5: str,
    run_exports: Mapping[str, Any] | None,
    cache: GateCache | None = None,
) -> bytes:
    """The repodata record of a local package, or InvalidPackage saying what is wrong."""
    _check_identity(filename, folder_subdir, index)
    record = {key: value for key, value in index.items() if key not in FOREIGN_KEYS}
    record.setdefault("subdir", folder_subdir)
    record.setdefault("depends", [])
    record.update(md5=md5, sha256=sha256, size=size)
    if run_exports:
        record["run_exports"] = dict(run_exports)
    try:
        raw = msgspec.json.encode(record, order="sorted")
    except (TypeError, ValueError, OverflowError) as exc:  # a lone surrogate, say
        raise InvalidPackage(f"info/index.json cannot be written as JSON: {exc}") from None
    verdict = admit(
        filename, raw, group=expected_group(filename), subdir=folder_subdir, cache=cache
    )
    if isinstance(verdict, Refusal):
        where = f"'{verdict.field}': " if verdict.field else ""
        raise InvalidPackage(f"info/index.json: {where}{verdict.message}", verdict.reason)
    return raw


def _check_identity(filename: str, folder_subdir: str, index: Mapping[str, Any]) -> None:
    """What only the person who put the file there can fix, said in their terms (the gate
    checks the same, and everything else)."""
    for key in _REQUIRED_STRINGS:
        value = index.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidPackage(f"info/index.json: '{key}' must be a non-empty string")
    stem, _ = split_extension(filename)
    expected = f"{index['name']}-{index['version']}-{index['build']}"
    if stem != expected:
        raise InvalidPackage(
            f"the file name does not match its metadata, which says {expected}; rename the file "
            "to that or rebuild the package"
        )
    subdir = index.get("subdir", folder_subdir)
    if subdir != folder_subdir:
        raise InvalidPackage(
            f"info/index.json says subdir '{subdir}' but the file is in '{folder_subdir}'; "
            f"put it in {subdir}/"
        )
