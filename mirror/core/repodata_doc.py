"""repodata.json as bytes: a deterministic rendering, and an in-place splice for small changes.

The rendering puts one record per line, sorted by file name within each group:

    {
    "info":{"subdir":"linux-64"},
    "packages":{
    "a-1-0.tar.bz2":{...},
    "b-1-0.tar.bz2":{...}
    },
    "packages.conda":{},
    "removed":[],
    "repodata_version":1
    }

Newlines inside values are whitespace between JSON tokens (a JSON string cannot hold a raw
newline), so they are replaced by spaces: every line is then exactly one record or one
top-level key. That invariant lets `splice_records` update a 350 MB document for a handful of
changed records by binary search, without loading or re-rendering the other 500,000.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from mirror.core.records import PACKAGE_GROUPS, expected_group

_COLLAPSE = bytes.maketrans(b"\r\n", b"  ")


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    """A record as it will be written: its final JSON bytes under its file name."""

    filename: str
    raw: bytes | msgspec.Raw


class _Stamp(msgspec.Struct):
    sha256: str | None = None
    indexed_timestamp: int | None = None


class _Stamps(msgspec.Struct):
    packages: dict[str, _Stamp] = msgspec.field(default_factory=dict)
    conda: dict[str, _Stamp] = msgspec.field(default_factory=dict, name="packages.conda")


def indexed_times(data: bytes) -> dict[str, tuple[str | None, int]]:
    """filename -> (sha256, indexed_timestamp) of the published records that carry a time;
    {} when the document cannot be read. Only these two fields are decoded."""
    try:
        doc = msgspec.json.decode(data, type=_Stamps)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {}
    return {
        filename: (stamp.sha256, stamp.indexed_timestamp)
        for group in (doc.packages, doc.conda)
        for filename, stamp in group.items()
        if stamp.indexed_timestamp is not None
    }


class _RawGroups(msgspec.Struct):
    packages: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    conda: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict, name="packages.conda")


def published_records(data: bytes) -> dict[str, tuple[_Stamp, bytes]]:
    """filename -> (its sha256 and indexed_timestamp, the record's bytes as published);
    {} when the document cannot be read."""
    try:
        doc = msgspec.json.decode(data, type=_RawGroups)
        return {
            filename: (msgspec.json.decode(raw, type=_Stamp), bytes(raw))
            for group in (doc.packages, doc.conda)
            for filename, raw in group.items()
        }
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {}


def record_line(filename: str, raw: bytes | msgspec.Raw) -> bytes:
    """`"<filename>":<record>` on one line (file names never hold quotes or newlines)."""
    return b'"' + filename.encode() + b'":' + bytes(raw).translate(_COLLAPSE)


def with_indexed_timestamp(raw: bytes, indexed_ms: int | None) -> bytes:
    """CEP-47: add `indexed_timestamp` unless the record already carries one (upstream's wins).

    Appended before the closing brace, so the upstream bytes stay otherwise verbatim."""
    if indexed_ms is None or b'"indexed_timestamp"' in raw:
        return raw
    body = raw.rstrip()
    if not body.endswith(b"}"):
        return raw
    inner = body[:-1].rstrip()
    separator = b"" if inner.endswith(b"{") else b","
    return inner + separator + b'"indexed_timestamp":' + str(indexed_ms).encode() + b"}"


def render_repodata(
    subdir: str,
    records: Iterable[PublishedRecord],
    top_level: Mapping[str, bytes | msgspec.Raw] | None = None,
) -> bytes:
    """Render repodata.json deterministically: sorted keys and file names, one record a line.

    Upstream's top-level keys are kept verbatim, except `info`: its `subdir` is set to ours and
    `base_url` is dropped because the files now sit beside this repodata. A repodata_version of
    2 only announced that base_url; without it we write 1 so that older clients accept the file.
    """
    top = local_top_level(subdir, top_level)
    groups: dict[str, list[PublishedRecord]] = {group: [] for group in PACKAGE_GROUPS}
    for record in records:
        groups[expected_group(record.filename)].append(record)
    for group, members in groups.items():
        members.sort(key=lambda r: r.filename)
        lines = [record_line(r.filename, r.raw) for r in members]
        top[group] = b"{\n" + b",\n".join(lines) + b"\n}" if lines else b"{}"
    parts = [msgspec.json.encode(key) + b":" + top[key] for key in sorted(top)]
    return b"{\n" + b",\n".join(parts) + b"\n}\n"


def local_top_level(
    subdir: str, top_level: Mapping[str, bytes | msgspec.Raw] | None
) -> dict[str, bytes]:
    """The top-level keys other than the record groups, as they will be written."""
    top = {
        key: bytes(value).translate(_COLLAPSE)
        for key, value in (top_level or {}).items()
        if key not in PACKAGE_GROUPS
    }
    info, dropped_base_url = _local_info(subdir, top.get("info"))
    top["info"] = info
    if dropped_base_url and top.get("repodata_version", b"").strip() == b"2":
        top["repodata_version"] = b"1"
    top.setdefault("repodata_version", b"1")
    top.setdefault("removed", b"[]")
    return top


def _local_info(subdir: str, raw_info: bytes | None) -> tuple[bytes, bool]:
    info: dict[str, object] = {}
    if raw_info:
        try:
            decoded = msgspec.json.decode(raw_info)
        except msgspec.DecodeError:
            decoded = None
        if isinstance(decoded, dict):
            info = decoded
    dropped = info.pop("base_url", None) is not None
    info["subdir"] = subdir
    return msgspec.json.encode(info, order="sorted"), dropped


def splice_records(
    old: bytes, changes: Mapping[str, bytes | None]
) -> list[bytes | memoryview] | None:
    """Apply record changes to a document `render_repodata` wrote, without re-rendering it.

    `changes` maps a file name to its new final record bytes, or to None to delete it. Returns
    the new document as pieces to write in order (mostly zero-copy views of `old`), or None
    when `old` is not in the rendered shape (then the caller renders from scratch). The result
    is byte for byte what `render_repodata` produces for the changed record set.
    """
    by_group: dict[str, dict[str, bytes | None]] = {group: {} for group in PACKAGE_GROUPS}
    for filename, raw in changes.items():
        by_group[expected_group(filename)][filename] = raw
    sections = _sections(old)
    if sections is None:
        return None
    view = memoryview(old)
    pieces: list[bytes | memoryview] = []
    cursor = 0
    for (lo, hi), group in sections:
        pieces.append(view[cursor:lo])
        pieces.extend(_splice_section(old, view, lo, hi, by_group[group]))
        cursor = hi
    pieces.append(view[cursor:])
    return pieces


def _sections(old: bytes) -> list[tuple[tuple[int, int], str]] | None:
    """Where each group's content sits, found in document order. The stretches outside the
    groups are short (top-level keys), so checking that no group header repeats there is
    cheap; inside a group every line is a record, which cannot look like a header."""
    heads = {group: b'\n"' + group.encode() + b'":{' for group in PACKAGE_GROUPS}
    found = []
    cursor = 0
    for group in sorted(PACKAGE_GROUPS):  # rendered with sorted keys: packages first
        at = old.find(heads[group], cursor)
        if at < 0:
            return None
        outside = old[cursor:at]
        if any(head in outside for head in heads.values()):
            return None
        bounds = _section_at(old, at + len(heads[group]))
        if bounds is None:
            return None
        found.append((bounds, group))
        cursor = bounds[1]
    tail = old[cursor:]
    if any(head in tail for head in heads.values()):
        return None
    return found


def _section_at(old: bytes, lo: int) -> tuple[int, int] | None:
    """The content between a group's braces: "" when empty, else "\n" and its record lines."""
    if old.startswith(b"}", lo):
        return lo, lo
    if not old.startswith(b"\n", lo):
        return None
    end = old.find(b"\n}", lo)  # record lines start with a quote, so this ends the group
    return (lo, end + 1) if end >= 0 else None


def _splice_section(
    old: bytes, view: memoryview, lo: int, hi: int, changes: Mapping[str, bytes | None]
) -> list[bytes | memoryview]:
    """The new content between a group's braces.

    Old lines end in ",\n" except the last, which ends in "\n": while assembling, every line
    is given ",\n", and the very last comma is taken off at the end."""
    lines_lo, lines_hi = (lo, lo) if lo == hi else (lo + 1, hi)
    pieces: list[bytes | memoryview] = []

    def take_old(a: int, b: int) -> None:
        if a >= b:
            return
        if b == lines_hi:  # includes the old last line, which has no comma
            pieces.extend((view[a : b - 1], b",\n"))
        else:
            pieces.append(view[a:b])

    cursor = lines_lo
    for filename in sorted(changes):
        key = filename.encode()
        at = _find_line(old, cursor, lines_hi, key)
        take_old(cursor, at)
        cursor = at
        if cursor < lines_hi and _line_key(old, cursor) == key:
            cursor = old.index(b"\n", cursor) + 1  # the old version of this record goes
        raw = changes[filename]
        if raw is not None:
            pieces.append(record_line(filename, raw) + b",\n")
    take_old(cursor, lines_hi)
    if not pieces:
        return []
    last = pieces.pop()
    return [b"\n", *pieces, last[:-2], b"\n"]


def _find_line(old: bytes, lo: int, hi: int, key: bytes) -> int:
    """First line start in [lo, hi) whose file name is >= key (lines are sorted by it)."""
    while lo < hi:
        mid = (lo + hi) // 2
        line_start = max(old.rfind(b"\n", lo, mid) + 1, lo)
        line_end = old.index(b"\n", line_start) + 1
        if _line_key(old, line_start) < key:
            lo = line_end
        else:
            hi = line_start
    return lo


def _line_key(old: bytes, line_start: int) -> bytes:
    return old[line_start + 1 : old.index(b'"', line_start + 1)]
