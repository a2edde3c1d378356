"""Use case: check that a published tree is exactly what it claims -> VerifyReport.

For every subdir of every configured channel:
- every record in repodata.json names a file that exists with the recorded size and hash
  (by default a file whose size and mtime still match the catalog is trusted with the hash the
  catalog recorded when it was verified; `full` hashes every file);
- repodata.json.zst decompresses to exactly repodata.json, current_repodata.json.zst to exactly
  current_repodata.json, and the records of current_repodata.json name files that are right;
- the shard index names only shards that exist, whose names are their hashes, and whose
  records are exactly repodata.json's (no more, no fewer);
- no temp file is left behind and no package file sits in the subdir unindexed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

import msgspec
import zstandard

from mirror.adapters.catalog import Catalog, CatalogFile
from mirror.adapters.store import TEMP_PREFIX, TEMP_SUFFIX, ChannelTree
from mirror.core.records import PACKAGE_GROUPS, name_from_filename
from mirror.core.shards import SHARD_INDEX_NAME, SHARDS_DIR, read_shard, read_shard_index
from mirror.core.tree_store import join
from mirror.publish.names import (
    CURRENT_REPODATA,
    CURRENT_REPODATA_ZST,
    REPODATA_JSON,
    REPODATA_ZST,
)
from mirror.reports import ProblemKind, SubdirCheck, VerifyReport

# problem kinds (low-cardinality; repair decides by them)


def verify(
    tree: ChannelTree, catalog: Catalog, targets: Iterable[tuple[str, str]], *, full: bool = False
) -> VerifyReport:
    """Check each (channel, subdir); nothing is changed."""
    started = time.monotonic()
    checks = tuple(verify_subdir(tree, catalog, c, s, full=full) for c, s in targets)
    return VerifyReport(checks, time.monotonic() - started)


def verify_subdir(
    tree: ChannelTree, catalog: Catalog, channel: str, subdir: str, *, full: bool
) -> SubdirCheck:
    check = SubdirCheck(channel, subdir)
    directory = tree.subdir_key(channel, subdir)
    try:
        body = tree.read(join(directory, REPODATA_JSON))
    except FileNotFoundError:
        check.problem(
            ProblemKind.BAD_REPODATA, REPODATA_JSON, "missing: clients of this subdir get a 404"
        )
        return check
    records = _records(check, body, REPODATA_JSON)
    if records is None:
        return check
    check.records = len(records)
    known = catalog.files(channel, subdir)
    checked: dict[str, dict[str, Any]] = {}

    def check_records(source: dict[str, dict[str, Any]]) -> None:
        """Every index a client may read must name only files that are there and right."""
        for filename, record in source.items():
            if checked.get(filename) != record:
                checked[filename] = record
                _check_file(
                    check, tree, directory, filename, record, known.get(filename), full=full
                )

    check_records(records)
    zst_records = _check_zst(check, tree, directory, body, REPODATA_ZST, REPODATA_JSON)
    if zst_records is not None:
        check_records(zst_records)
    for current in _check_current(check, tree, directory):
        check_records(current)
    check_records(_check_shards(check, tree, directory, records))
    on_disk = tree.scan_packages(channel, subdir)
    for filename in sorted(set(on_disk) - set(checked)):
        check.problem(ProblemKind.UNINDEXED, filename, "a package file no index names")
    for leftover in tree.list_names(directory, TEMP_SUFFIX):
        if leftover.startswith(TEMP_PREFIX):
            check.problem(
                ProblemKind.TEMP_FILE, leftover + TEMP_SUFFIX, "a temp file an interrupted run left"
            )
    return check


def _records(check: SubdirCheck, body: bytes, name: str) -> dict[str, dict[str, Any]] | None:
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        check.problem(ProblemKind.BAD_REPODATA, name, f"not valid JSON ({exc})")
        return None
    if not isinstance(document, dict):
        check.problem(ProblemKind.BAD_REPODATA, name, "not a JSON object")
        return None
    records: dict[str, dict[str, Any]] = {}
    for group in PACKAGE_GROUPS:
        entries = document.get(group) or {}
        if not isinstance(entries, dict):
            check.problem(ProblemKind.BAD_REPODATA, name, f"'{group}' is not an object")
            return None
        records.update(entries)
    return records


def _check_file(
    check: SubdirCheck,
    tree: ChannelTree,
    directory: str,
    filename: str,
    record: dict[str, Any],
    known: CatalogFile | None,
    *,
    full: bool,
) -> None:
    key = join(directory, filename)
    stat = tree.stat(key)
    if stat is None:
        check.problem(
            ProblemKind.MISSING_FILE, filename, "named by repodata.json but not in the subdir"
        )
        return
    want_size, want_sha, want_md5 = record.get("size"), record.get("sha256"), record.get("md5")
    if isinstance(want_size, int) and stat.size != want_size:
        check.problem(
            ProblemKind.BAD_FILE, filename, f"{stat.size} bytes, its record says {want_size}"
        )
        return
    trusted = (
        not full
        and known is not None
        and (known.size, known.mtime_ns) == (stat.size, stat.mtime_ns)
        and (known.sha256 == want_sha if want_sha else known.md5 == want_md5)
    )
    if trusted:
        return
    check.hashed += 1
    _, sha256, md5 = tree.digest(key)
    if (want_sha and sha256 != want_sha) or (not want_sha and md5 != want_md5):
        check.problem(
            ProblemKind.BAD_FILE, filename, "its bytes do not hash to its record's checksum"
        )


def _check_zst(
    check: SubdirCheck,
    tree: ChannelTree,
    directory: str,
    body: bytes,
    zst_name: str,
    json_name: str,
) -> dict[str, dict[str, Any]] | None:
    """The records of the .zst when it differs from its .json (a crash between the two
    writes leaves it one step ahead: stale, not wrong, as long as its files are there)."""
    compressed = tree.read_if_there(join(directory, zst_name))
    if compressed is None:
        return None  # switched off: nothing to disagree with
    try:
        inflated = (
            zstandard.ZstdDecompressor().stream_reader(compressed, read_across_frames=True).read()
        )
    except zstandard.ZstdError as exc:
        check.problem(ProblemKind.BAD_REPODATA, zst_name, f"not valid zstd ({exc})")
        return None
    if inflated == body:
        return None
    check.problem(ProblemKind.STALE_INDEX, zst_name, f"does not hold the same bytes as {json_name}")
    return _records(check, inflated, zst_name)


def _check_current(
    check: SubdirCheck, tree: ChannelTree, directory: str
) -> list[dict[str, dict[str, Any]]]:
    """The records of current_repodata.json and of its .zst when that differs: each must name
    only files that are there and right."""
    body = tree.read_if_there(join(directory, CURRENT_REPODATA))
    if body is None:
        if tree.stat(join(directory, CURRENT_REPODATA_ZST)):  # a crash between the two writes
            message = f"there is no {CURRENT_REPODATA} beside it"
            check.problem(ProblemKind.STALE_INDEX, CURRENT_REPODATA_ZST, message)
        return []
    records = _records(check, body, CURRENT_REPODATA)
    zst_records = _check_zst(check, tree, directory, body, CURRENT_REPODATA_ZST, CURRENT_REPODATA)
    return [r for r in (records, zst_records) if r is not None]


def _check_shards(
    check: SubdirCheck, tree: ChannelTree, directory: str, records: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The shards' records; problems when the shard index or a shard is damaged (wrong) or
    when they hold other records than repodata.json (stale)."""
    index_bytes = tree.read_if_there(join(directory, SHARD_INDEX_NAME))
    if index_bytes is None:
        return {}
    shard_map = read_shard_index(index_bytes)
    if not shard_map and records:
        check.problem(ProblemKind.BAD_REPODATA, SHARD_INDEX_NAME, "unreadable, or names no shard")
        return {}
    found: dict[str, dict[str, Any]] = {}
    for name, digest in sorted(shard_map.items()):
        relative = f"{SHARDS_DIR}/{digest}.msgpack.zst"
        data = tree.read_if_there(join(directory, relative))
        if data is None:
            check.problem(
                ProblemKind.BAD_REPODATA,
                relative,
                f"the shard of {name} named by the index is missing",
            )
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            check.problem(ProblemKind.BAD_REPODATA, relative, "its bytes do not hash to its name")
            continue
        try:
            found.update(read_shard(data))
        except ValueError as exc:
            check.problem(ProblemKind.BAD_REPODATA, relative, str(exc))
    differing = sorted(f for f in set(records) | set(found) if records.get(f) != found.get(f))
    if differing:
        names = sorted({name_from_filename(f) or f for f in differing})
        message = f"the shards disagree with repodata.json on {len(differing)} records"
        check.problem(
            ProblemKind.STALE_INDEX, SHARD_INDEX_NAME, f"{message} (of {', '.join(names[:5])})"
        )
    return found
