"""Repodata model: parse upstream repodata keeping raw record bytes; render deterministically.

Upstream records are copied verbatim into what we publish (that keeps conda-forge's patches and
keys we do not know), so we decode only the few fields filtering and verification need and keep
the rest as the exact JSON bytes upstream sent (`msgspec.Raw` slices of the document).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from mirror.errors import RepodataError

PACKAGE_GROUPS: tuple[str, ...] = ("packages", "packages.conda")
CONDA_EXT = ".conda"
TAR_BZ2_EXT = ".tar.bz2"

# A published file name is a plain basename: no separators, no leading dot, printable ASCII from
# the set conda itself produces. Everything else in upstream repodata is refused, never written.
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+!=-]{0,250}\.(?:conda|tar\.bz2)")
_HEX = re.compile(r"[0-9a-f]+")
# rattler reads sizes and build numbers as u64, and the catalog stores them as SQLite's signed
# 64-bit INTEGER: anything larger is refused rather than overflowing either
_COUNT = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_SIZE = Annotated[int, msgspec.Meta(le=2**63 - 1)]  # a negative size gets its own message


class RecordFields(msgspec.Struct, frozen=True):
    """The fields of a record that filters and download verification read; the rest stays raw."""

    name: str
    version: str
    build: str
    build_number: _COUNT = 0
    subdir: str | None = None
    size: _SIZE | None = None
    sha256: str | None = None
    md5: str | None = None
    timestamp: int | float | None = None
    license: str | None = None
    license_family: str | None = None


class ClientTypedFields(msgspec.Struct, frozen=True):
    """Keys that rattler (pixi, mamba 2) reads with fixed types. It refuses a whole repodata.json
    when a single record has, say, `depends` as a string, so such a record published verbatim
    would make the subdir unusable: it is refused instead. Decoded only to check, then dropped."""

    # null where a list belongs: rattler refuses it, but conda and mamba read it and real
    # channels have it (conda-forge records kept in mamba's tests), so it is let through
    depends: list[str] | None = None
    constrains: list[str] | None = None
    track_features: str | list[str] = ""
    features: str | None = None
    noarch: Literal["python", "generic"] | bool | None = None
    subdir: str = ""
    arch: str | None = None
    platform: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One upstream record: its file name, its verbatim JSON bytes and the decoded fields."""

    filename: str
    raw: bytes | msgspec.Raw
    fields: RecordFields

    @property
    def timestamp_ms(self) -> int | None:
        return normalize_timestamp_ms(self.fields.timestamp)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An upstream record we will not mirror, and why (the file name is named in messages)."""

    filename: str
    reason: str


@dataclass(frozen=True)
class UpstreamRepodata:
    """A parsed upstream repodata document.

    `entries` maps file name to raw record for both groups (the group is implied by the
    extension); `top_level` keeps every other top-level key verbatim (info, removed,
    repodata_version, signatures, unknown keys).
    """

    entries: Mapping[str, tuple[str, msgspec.Raw]]
    top_level: Mapping[str, msgspec.Raw]
    body: bytes | bytearray = b""  # the document the raw slices point into


def parse_repodata(body: bytes | bytearray, *, source: str) -> UpstreamRepodata:
    """Split a repodata document into raw records without decoding them.

    `source` names the document in errors (a redacted URL or a path).
    """
    try:
        top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, RecursionError) as exc:  # a value nested 1,000 deep recurses
        raise RepodataError(
            f"{source}: not valid repodata JSON ({exc}); the upstream served something else "
            "(an error page, a truncated file). Nothing was changed; retry later."
        ) from exc
    _check_top_level(top, source)
    entries: dict[str, tuple[str, msgspec.Raw]] = {}
    for group in PACKAGE_GROUPS:
        raw_group = top.pop(group, None)
        if raw_group is None:
            continue
        try:
            records = msgspec.json.decode(raw_group, type=dict[str, msgspec.Raw])
        except msgspec.DecodeError as exc:
            raise RepodataError(
                f"{source}: '{group}' is not a JSON object of records ({exc}); nothing was changed."
            ) from exc
        for filename, raw in records.items():
            entries[filename] = (group, raw)
    return UpstreamRepodata(entries=entries, top_level=top, body=body)


# top-level keys published verbatim that rattler reads with a fixed type (it refuses the whole
# document otherwise); `info` is rebuilt by us, unknown keys are never read by anyone
_TOP_LEVEL_TYPES: dict[str, object] = {
    "removed": list[str],
    "repodata_version": _COUNT | None,
}


def _check_top_level(top: Mapping[str, msgspec.Raw], source: str) -> None:
    for key, kind in _TOP_LEVEL_TYPES.items():
        if key not in top:
            continue
        try:
            msgspec.json.decode(top[key], type=kind)
        except msgspec.ValidationError as exc:
            raise RepodataError(
                f"{source}: '{key}' is malformed ({exc}); clients would refuse this repodata, "
                "so nothing was changed."
            ) from exc


def is_safe_filename(filename: str) -> bool:
    """True for a plain package basename we are willing to create on disk."""
    return _SAFE_FILENAME.fullmatch(filename) is not None and ".." not in filename


def expected_group(filename: str) -> str:
    return "packages.conda" if filename.endswith(CONDA_EXT) else "packages"


def split_extension(filename: str) -> tuple[str, str]:
    """`numpy-2.0-py_0.conda` -> (`numpy-2.0-py_0`, `.conda`); unknown extensions give ('', '')."""
    for ext in (CONDA_EXT, TAR_BZ2_EXT):
        if filename.endswith(ext):
            return filename[: -len(ext)], ext
    return "", ""


def name_from_filename(filename: str) -> str | None:
    """The package name a well-formed file name implies, used to skip records cheaply.

    A record is only accepted when its file name equals name-version-build + extension, so a
    record whose implied name no include spec matches can be skipped without decoding it.
    """
    stem, _ = split_extension(filename)
    parts = stem.rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


def decode_record(filename: str, group: str, raw: msgspec.Raw) -> Record | Refusal:
    """Decode and validate one upstream record; anything suspicious becomes a Refusal."""
    shown = _printable(filename)
    if not is_safe_filename(filename):
        return Refusal(
            shown,
            "file name is not a plain .conda/.tar.bz2 basename (path or "
            "unexpected characters); refused",
        )
    if expected_group(filename) != group:
        return Refusal(shown, f"listed under '{group}' but its extension belongs elsewhere")
    try:
        fields = msgspec.json.decode(raw, type=RecordFields)
        msgspec.json.decode(raw, type=ClientTypedFields)
        duplicate = duplicate_key(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return Refusal(shown, f"record is malformed: {exc}")
    if duplicate is not None:
        # conda keeps the last value, rattler refuses the whole repodata: published verbatim,
        # such a record would make clients disagree (or fail), so it is never published
        return Refusal(shown, f"record has the key {_printable(duplicate)!r} twice; refused")
    stem, _ = split_extension(filename)
    if f"{fields.name}-{fields.version}-{fields.build}" != stem:
        return Refusal(
            shown,
            f"record says {fields.name}-{fields.version}-{fields.build}, "
            "which does not match its file name",
        )
    problem = _checksum_problem(fields)
    if problem:
        return Refusal(shown, problem)
    return Record(filename=filename, raw=raw, fields=fields)


def duplicate_key(raw: bytes | msgspec.Raw) -> str | None:
    """A top-level key that occurs more than once in a JSON object, or None.

    Fast path: when the bytes hold as many `":` as the object has distinct keys, each key
    occurs once (and no value nests an object); only other records are parsed key by key.
    """
    keys = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    data = bytes(raw)
    if data.count(b'":') == len(keys):
        return None
    # the hook sees nested objects first and the record itself last; repeated keys inside a
    # nested value trouble no reader's record type, so only the last call's keys count
    last_keys: list[str] = []

    def remember(pairs: list[tuple[str, object]]) -> dict[str, object]:
        last_keys[:] = [key for key, _ in pairs]
        return {}

    json.loads(data, object_pairs_hook=remember)
    seen: set[str] = set()
    for key in last_keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _checksum_problem(fields: RecordFields) -> str | None:
    if fields.size is not None and fields.size < 0:
        return "size is negative"
    if fields.sha256 is not None and not (
        len(fields.sha256) == 64 and _HEX.fullmatch(fields.sha256)
    ):
        return "sha256 is not 64 lowercase hex digits"
    if fields.md5 is not None and not (len(fields.md5) == 32 and _HEX.fullmatch(fields.md5)):
        return "md5 is not 32 lowercase hex digits"
    if fields.sha256 is None and fields.md5 is None:
        return "record has neither sha256 nor md5, so a download could not be verified"
    return None


def normalize_timestamp_ms(value: int | float | None) -> int | None:
    """conda timestamps are milliseconds, but old records use seconds; conda tells them apart
    the same way (anything past year 9999 in seconds must be milliseconds)."""
    if value is None:
        return None
    return int(value) if value > 253402300799 else int(value * 1000)


def _printable(text: str) -> str:
    """A file name safe to print in a log line (hostile names may hold control characters)."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 200 else shown[:200] + "..."
