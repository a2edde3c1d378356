"""Repodata patch instructions (conda-index semantics) applied to records at publish time.

`{"patch_instructions_version": 1, "packages": {fn: {key: value}}, "packages.conda": {...},
  "revoke": [fn, ...], "remove": [fn, ...]}`:
- keys in a fix replace the record's keys (a null value deletes the key);
- a `.tar.bz2` fix also applies to the `.conda` of the same name-version-build;
- `revoke` sets `revoked: true` and adds the unsatisfiable dependency
  `package_has_been_revoked`, so solvers skip the record but it stays downloadable;
- `remove` drops the record and lists its file name under `removed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mirror.errors import RepodataError

REVOKED_DEPENDENCY = "package_has_been_revoked"


@dataclass(frozen=True)
class PatchSet:
    """Parsed instructions for one subdir. `digest` changes whenever the instructions do."""

    fixes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    revoke: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    digest: str = ""


NO_PATCHES = PatchSet()


def parse_patch_instructions(data: bytes, source: str) -> PatchSet:
    """Validate and normalise instructions; `.tar.bz2` fixes are copied to the `.conda` name."""
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise RepodataError(f"{source}: patch instructions are not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise RepodataError(f"{source}: patch instructions must be a JSON object")
    version = document.get("patch_instructions_version", 1)
    if version != 1:
        raise RepodataError(f"{source}: patch_instructions_version {version} is not supported")
    fixes: dict[str, dict[str, Any]] = {}
    for group in ("packages", "packages.conda"):
        entries = document.get(group, {})
        if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
            raise RepodataError(f"{source}: '{group}' must map file names to objects")
        for filename, fix in entries.items():
            fixes.setdefault(filename, {}).update(fix)
            if filename.endswith(".tar.bz2"):
                twin = filename[: -len(".tar.bz2")] + ".conda"
                # an explicit .conda fix wins over the one inherited from its .tar.bz2 twin
                fixes[twin] = {**fix, **fixes.get(twin, {})}
    revoke, remove = (_names(document, key, source) for key in ("revoke", "remove"))
    return PatchSet(
        fixes=fixes,
        revoke=revoke | _conda_twins(revoke),
        remove=remove | _conda_twins(remove),
        digest=hashlib.sha256(data).hexdigest(),
    )


def _names(document: Mapping[str, Any], key: str, source: str) -> frozenset[str]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RepodataError(f"{source}: '{key}' must be a list of file names")
    return frozenset(value)


def _conda_twins(names: frozenset[str]) -> frozenset[str]:
    return frozenset(n[: -len(".tar.bz2")] + ".conda" for n in names if n.endswith(".tar.bz2"))


def patch_record(patches: PatchSet, filename: str, raw: bytes) -> bytes | None:
    """The record's bytes after patching; None when the instructions remove it.

    Records the instructions do not name are returned untouched (verbatim)."""
    if filename in patches.remove:
        return None
    if filename not in patches.fixes and filename not in patches.revoke:
        return raw
    record = msgspec.json.decode(raw)
    if not isinstance(record, dict):
        return raw
    for key, value in patches.fixes.get(filename, {}).items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    if filename in patches.revoke:
        record["revoked"] = True
        depends = record.get("depends")
        depends = list(depends) if isinstance(depends, list) else []
        if REVOKED_DEPENDENCY not in depends:
            depends.append(REVOKED_DEPENDENCY)
        record["depends"] = depends
    return msgspec.json.encode(record, order="sorted")
