"""Records of local package files, built from the package's own info/ and checked against it.

A record is info/index.json plus md5, sha256 and size (and run_exports when the package has
some, as rattler-index writes them), with sorted keys so the bytes are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from mirror.core.records import ClientTypedFields, RecordFields, split_extension

_REQUIRED_STRINGS = ("name", "version", "build")
_LIST_OF_STRINGS = ("depends", "constrains")


class InvalidPackage(ValueError):
    """The package's metadata disagrees with itself or with where it was put."""


def local_record(
    filename: str,
    folder_subdir: str,
    index: Mapping[str, Any],
    *,
    size: int,
    sha256: str,
    md5: str,
    run_exports: Mapping[str, Any] | None,
) -> bytes:
    """The repodata record of a local package, or InvalidPackage saying what is wrong."""
    for key in _REQUIRED_STRINGS:
        value = index.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidPackage(f"info/index.json: '{key}' must be a non-empty string")
    build_number = index.get("build_number", 0)
    if isinstance(build_number, bool) or not isinstance(build_number, int) or build_number < 0:
        raise InvalidPackage("info/index.json: 'build_number' must be a whole number >= 0")
    for key in _LIST_OF_STRINGS:
        value = index.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidPackage(f"info/index.json: '{key}' must be a list of strings")
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
    record = dict(index)
    record.setdefault("subdir", folder_subdir)
    record.setdefault("depends", [])
    record.update(md5=md5, sha256=sha256, size=size)
    if run_exports:
        record["run_exports"] = dict(run_exports)
    _check_client_types(record)
    return msgspec.json.encode(record, order="sorted")


def _check_client_types(record: Mapping[str, Any]) -> None:
    """The same type checks as for upstream records: rattler refuses a whole repodata.json
    when one record has, say, `noarch: 7`, so one bad local package must not publish that."""
    try:
        msgspec.convert(record, RecordFields)
        msgspec.convert(record, ClientTypedFields)
    except msgspec.ValidationError as exc:
        raise InvalidPackage(f"info/index.json: {exc}") from None
