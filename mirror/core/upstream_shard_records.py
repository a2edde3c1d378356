"""One fetched upstream shard -> the records repodata.json would have given: canonical JSON bytes.

A shard is msgpack, repodata.json is JSON: `md5`, `sha256` (CEP-16) and `legacy_bz2_md5`
(rattler writes every digest of its PackageRecord as raw bytes) become lowercase hex, as conda's
`ensure_hex_hash` and rattler's digest reader do. Everything else must already be a JSON value.
What JSON cannot hold (binary data elsewhere, NaN or infinity, non-string or repeated map keys,
msgpack extension types and timestamps) refuses that record with a reason: conda would pass
it on unchecked and rattler would refuse the whole shard. What JSON can hold is passed on as is,
for the record gate to judge exactly as it judges repodata.json.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgspec

from mirror.core.closure import dependency_name
from mirror.core.records import (
    PACKAGE_GROUPS,
    Refusal,
    RefusalReason,
    name_from_filename,
    removed_names,
)
from mirror.core.upstream_shards import (
    FALLBACK,
    MAX_SHARD_BYTES,
    Unfit,
    decompress_bounded,
    digest_hex,
    printable,
    unpack,
)
from mirror.errors import ShardError, ShardHashMismatch

DIGEST_KEYS = ("md5", "sha256", "legacy_bz2_md5")
MAX_DEPTH = 64  # real records nest 3 deep (run_exports); msgpack itself allows 1,024
_ENCODER = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True)
class UpstreamShard:
    """The records of one package name, as the full path gets them from repodata.json.

    `entries`: file name -> (group, canonical record JSON). `removed`: the shard's `removed`
    file names, sorted. `refused`: records JSON cannot hold, and records filed under another
    package's name. `unknown_keys`: top-level keys other than the groups and `removed` (rattler
    writes `v3` there); repodata.json would carry them, a shard cannot give them back.
    """

    name: str
    sha256: str
    entries: Mapping[str, tuple[str, bytes]] = field(repr=False)
    removed: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()
    unknown_keys: tuple[str, ...] = ()
    dependency_specs: frozenset[str] = frozenset()  # the `depends` of the records kept

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))

    @property
    def dependency_names(self) -> frozenset[str]:
        """The package names the kept records depend on, virtual packages left out; parsed
        only when a closure asks."""
        found = (dependency_name(spec) for spec in self.dependency_specs)
        return frozenset(name for name in found if name)


def decode_shard(
    data: bytes,
    *,
    name: str,
    sha256_hex: str,
    source: str,
    max_bytes: int = MAX_SHARD_BYTES,
) -> UpstreamShard:
    """Check and decode the shard the index names `sha256_hex` for package `name`.

    ShardHashMismatch when the bytes are not the named shard (nothing is decoded then);
    ShardError when they are no shard; a record JSON cannot hold is refused, not raised.
    """
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256_hex:
        raise ShardHashMismatch(
            f"{source}: the shard of {printable(name)!r} has sha256 {actual}, but the index "
            f"names it {printable(sha256_hex)}; {FALLBACK}"
        )
    document = unpack(
        decompress_bounded(data, max_bytes, source=source, what="shard"),
        source=source,
        what="shard",
    )
    if not isinstance(document, dict):
        raise _malformed(source, _why(document, "the document is not a map"))
    entries, refused, depends = _read_groups(document, name, source)
    return UpstreamShard(
        name=name,
        sha256=actual,
        entries=entries,
        removed=_removed(document.get("removed", []), source),
        refused=tuple(refused),
        unknown_keys=tuple(sorted(set(document) - {*PACKAGE_GROUPS, "removed"})),
        dependency_specs=frozenset(depends),
    )


def _read_groups(
    document: dict[str, Any], name: str, source: str
) -> tuple[dict[str, tuple[str, bytes]], list[Refusal], set[str]]:
    """(file name -> (group, record JSON), refusals, the dependency specs of kept records)."""
    entries: dict[str, tuple[str, bytes]] = {}
    refused: list[Refusal] = []
    depends: set[str] = set()
    for group in PACKAGE_GROUPS:
        records = document.get(group, {})
        if not isinstance(records, dict):
            raise _malformed(source, _why(records, f"'{group}' is not a map of records"))
        for filename, record in records.items():
            outcome = _record_json(name, filename, record)
            if isinstance(outcome, Refusal):
                refused.append(outcome)
                continue
            # as parse_repodata does: a file name in both groups keeps the later one
            entries[filename] = (group, outcome)
            specs = record.get("depends") if isinstance(record, dict) else None
            if isinstance(specs, list):
                depends.update(spec for spec in specs if isinstance(spec, str))
    return entries, refused, depends


def _malformed(source: str, detail: str) -> ShardError:
    return ShardError(f"{source}: the shard is malformed ({detail}); {FALLBACK}")


def _why(value: Any, otherwise: str) -> str:
    return f"it is {value.reason}" if isinstance(value, Unfit) else otherwise


def _removed(value: Any, source: str) -> tuple[str, ...]:
    """As for repodata.json's `removed`, anything but a list of strings refuses it all, and
    strings that name no package file are dropped."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _malformed(source, "'removed' is not a list of file names")
    return tuple(sorted(set(removed_names(value, ()))))


def _record_json(shard_name: str, filename: str, record: Any) -> bytes | Refusal:
    implied = name_from_filename(filename)
    if implied is not None and implied != shard_name:
        # a sharded client looks for it in its own name's shard only, and whether we saw it
        # must not depend on which other shards a run happened to fetch
        return Refusal(
            printable(filename),
            f"listed in the shard of {printable(shard_name)!r}, not in its own name's",
            RefusalReason.WRONG_SHARD,
        )
    if type(record) is dict:
        record = dict(record)
        for key in DIGEST_KEYS:
            hex_digest = digest_hex(record.get(key))
            if hex_digest is not None:
                record[key] = hex_digest
        for key, value in record.items():
            problem = json_problem(value, depth=1)
            if problem is not None:
                return _unfit(filename, f"field {printable(key)!r} {problem}")
    else:
        problem = f"is {record.reason}" if type(record) is Unfit else json_problem(record)
        if problem is not None:
            return _unfit(filename, f"the record {problem}")
    return _ENCODER.encode(record)


def _unfit(filename: str, problem: str) -> Refusal:
    return Refusal(
        printable(filename),
        f"{problem}, which repodata.json cannot hold; refused",
        RefusalReason.BAD_JSON,
    )


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` has no JSON form ("holds nan", ...), or None. Values JSON can hold are left
    for the record gate to judge. Exact type checks: msgpack makes no subclasses."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"holds {value!r}"
    if depth >= MAX_DEPTH:
        return f"is nested more than {MAX_DEPTH} levels deep"
    if kind is list or kind is dict:
        for item in value if kind is list else value.values():
            if type(item) is not str:  # most items are (depends, constrains)
                problem = json_problem(item, depth + 1)
                if problem is not None:
                    return problem
        return None
    if kind is Unfit:
        return f"holds {value.reason}"
    if kind is bytes:
        return "holds binary data"
    return f"holds a msgpack {kind.__name__} value"


def combine(shards: Iterable[UpstreamShard]) -> tuple[dict[str, tuple[str, bytes]], list[str]]:
    """The entries and the sorted `removed` file names of several shards, for one subdir."""
    entries: dict[str, tuple[str, bytes]] = {}
    removed: set[str] = set()
    for shard in shards:
        entries.update(shard.entries)
        removed.update(shard.removed)
    return entries, sorted(removed)
