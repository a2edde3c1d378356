"""Repodata model: records, refusals and the document split into raw records.

Upstream records are copied verbatim into what we publish (that keeps conda-forge's patches and
keys we do not know), so we keep each as the exact JSON bytes upstream sent (`msgspec.Raw`
slices of the document) beside the typed fields the record gate (mirror/core/gate.py) decoded.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from mirror.core.json_split import UNBOUNDED, SplitError, object_members, value_end_at
from mirror.errors import RepodataError

PACKAGE_GROUPS: tuple[str, ...] = ("packages", "packages.conda")
CONDA_EXT = ".conda"
TAR_BZ2_EXT = ".tar.bz2"

# A published file name is a plain basename: no separators, no leading dot, printable ASCII from
# the set conda itself produces. Everything else in upstream repodata is refused, never written.
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+!=-]*\.(?:conda|tar\.bz2)")
# NAME_MAX is 255 bytes on every filesystem we write to, and the store writes beside each file
# names derived from it (`.<name>.<pid>.<thread>.tmp`, `<name>.reason` in quarantine): a name must
# leave room for the longest of them, a `.mirror-<32 hex>.tmp`-sized suffix (44 bytes)
MAX_FILENAME_BYTES = 255 - len(".mirror-" + "0" * 32 + ".tmp")
# rattler reads build numbers as u64, and the catalog stores them as SQLite's signed 64-bit
# INTEGER: anything larger is refused rather than overflowing either
_COUNT = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class RunExports(msgspec.Struct, frozen=True):
    """`run_exports` inside a record, as rattler's RunExportsJson reads it (lists of strings)."""

    weak: tuple[str, ...] = ()
    strong: tuple[str, ...] = ()
    noarch: tuple[str, ...] = ()
    weak_constrains: tuple[str, ...] = ()
    strong_constrains: tuple[str, ...] = ()


class RecordFields(msgspec.Struct, frozen=True):
    """Every key of a record that rattler or conda read with a fixed type, typed as they read it.

    One badly typed record makes rattler refuse a whole repodata.json, so the record gate
    (mirror/core/gate.py, which also says where each type comes from) decodes this to check a
    record; filters and download verification read it afterwards. Unknown keys stay raw.
    Sequences are tuples so that the value stays hashable.
    """

    name: str
    version: str
    build: str
    build_number: int  # required by rattler; bounds are checked by the gate
    subdir: str = ""  # rattler: a string (null refused), missing means ""
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    timestamp: int | None = None  # rattler: i64, a float (even 1.0) is refused
    indexed_timestamp: int | None = None
    license: str | None = None
    license_family: str | None = None
    depends: tuple[str, ...] = ()  # rattler refuses null here (conda reads it)
    constrains: tuple[str, ...] = ()
    track_features: str | tuple[str, ...] = ""
    features: str | None = None
    noarch: Literal["python", "generic", ""] | bool | None = None
    arch: str | None = None
    platform: str | None = None
    legacy_bz2_md5: str | None = None
    legacy_bz2_size: int | None = None
    purls: tuple[str, ...] | None = None
    python_site_packages_path: str | None = None
    run_exports: RunExports | None = None
    flags: tuple[str, ...] = ()
    preferred_env: str | None = None  # conda's StringFields
    date: str = ""
    package_type: str | None = None  # conda's PackageType enum, checked by the gate
    record_version: int = 0  # conda skips (and, logging, crashes on) records above 1


class RefusalReason(StrEnum):
    """Why a record was refused, as a low-cardinality label (metrics, logs)."""

    BAD_FILENAME = "bad_filename"  # not a plain, short enough package basename
    WRONG_GROUP = "wrong_group"  # a .conda under "packages" or a .tar.bz2 under "packages.conda"
    WRONG_SHARD = "wrong_shard"  # a CEP-16 shard holds a record of another package name
    BAD_JSON = "bad_json"  # not a JSON object (syntax, NaN/Infinity, -0)
    BAD_UTF8 = "bad_utf8"  # bytes that are not UTF-8, or a lone surrogate escape
    TOO_DEEP = "too_deep"  # nested deeper than MAX_NESTING
    DUPLICATE_KEY = "duplicate_key"
    MISSING_KEY = "missing_key"
    BAD_TYPE = "bad_type"  # a key clients read has another JSON type
    BAD_VALUE = "bad_value"  # a value outside its enum or form (package_type, purls, ...)
    BAD_NUMBER = "bad_number"  # an integer out of range, or a number no client can hold
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_CHECKSUM = "bad_checksum"
    NO_CHECKSUM = "no_checksum"
    BAD_NAME = "bad_name"
    BAD_VERSION = "bad_version"
    BAD_BUILD = "bad_build"
    BAD_SPEC = "bad_spec"  # a dependency or constraint that is no MatchSpec
    NAME_MISMATCH = "name_mismatch"  # name-version-build differs from the file name
    WRONG_SUBDIR = "wrong_subdir"
    TOO_LARGE = "too_large"  # size above MAX_PACKAGE_SIZE_BYTES, or a huge record
    GATE_ERROR = "gate_error"  # the gate itself failed: a bug, the record is refused anyway
    INTERNAL_ERROR = "internal_error"  # handling an admitted record failed: refused alone


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
    """A record we will not publish: the file name (printable), what is wrong and why, and a
    low-cardinality reason; `field` names the key at fault when there is one."""

    filename: str
    message: str
    reason: RefusalReason
    field: str | None = None


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

    `source` names the document in errors (a redacted URL or a path). A document the strict
    decoder refuses is cut apart member by member (json_split), so that one record holding bytes
    that are not UTF-8 is refused by the gate on its own instead of failing the whole subdir.
    """
    try:
        top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
        groups = {g: top.pop(g) for g in PACKAGE_GROUPS if g in top}
        entries = _strict_entries(groups)
    except (msgspec.DecodeError, RecursionError) as exc:  # a value nested 1,000 deep recurses
        top, entries = _tolerant_split(bytes(body), source, exc)
    _check_top_level(top, source, entries)
    return UpstreamRepodata(entries=entries, top_level=top, body=body)


def _strict_entries(groups: Mapping[str, msgspec.Raw]) -> dict[str, tuple[str, msgspec.Raw]]:
    entries: dict[str, tuple[str, msgspec.Raw]] = {}
    for group, raw_group in groups.items():
        records = msgspec.json.decode(raw_group, type=dict[str, msgspec.Raw])
        for filename, raw in records.items():
            entries[filename] = (group, raw)
    return entries


def _tolerant_split(
    body: bytes, source: str, strict_error: Exception
) -> tuple[dict[str, msgspec.Raw], dict[str, tuple[str, msgspec.Raw]]]:
    """The members of a document the strict decoder refused; its structure must still hold."""
    try:
        members, end = object_members(body, max_depth=UNBOUNDED)  # records: the gate's to judge
        if body[end:].strip():
            raise SplitError(f"data after the document at byte {end}")
        top: dict[str, msgspec.Raw] = {}
        entries: dict[str, tuple[str, msgspec.Raw]] = {}
        for raw_key, raw_value in members:
            key = _member_name(raw_key)
            if key in PACKAGE_GROUPS:
                for raw_filename, raw_record in _group_members(raw_value, key, source):
                    entries[_member_name(raw_filename)] = (key, msgspec.Raw(raw_record))
                continue
            value_end_at(raw_value, 0)  # any other key nested past MAX_DEPTH refuses it all
            if _is_json(raw_value):
                top[key] = msgspec.Raw(raw_value)
            elif key in _TOP_LEVEL_TYPES or key == "info":
                raise SplitError(f"'{printable_name(key)}' is not valid JSON")
            # an unknown top-level key no reader could parse is dropped, not published
    except SplitError as exc:
        raise RepodataError(
            f"{source}: not valid repodata JSON ({strict_error}; {exc}); the upstream served "
            "something else (an error page, a truncated file). Nothing was changed; retry later."
        ) from exc
    return top, entries


def _group_members(raw: bytes, group: str, source: str) -> list[tuple[bytes, bytes]]:
    try:
        members, end = object_members(raw, max_depth=UNBOUNDED)
        if raw[end:].strip():
            raise SplitError(f"data after the object at byte {end}")
    except SplitError as exc:
        raise RepodataError(
            f"{source}: '{group}' is not a JSON object of records ({exc}); nothing was changed."
        ) from exc
    return members


def _member_name(raw_key: bytes) -> str:
    """A member's name; one whose bytes do not decode is shown escaped, which no safe file
    name matches, so the gate refuses its record by name."""
    try:
        return str(msgspec.json.decode(raw_key, type=str))
    except msgspec.DecodeError:
        return raw_key[1:-1].decode("utf-8", "backslashreplace")


def _is_json(raw: bytes) -> bool:
    try:
        msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


# top-level keys published verbatim that rattler reads with a fixed type (it refuses the whole
# document otherwise); `info` is rebuilt by us, unknown keys are never read by anyone
_TOP_LEVEL_TYPES: dict[str, object] = {
    "removed": list[str],
    "repodata_version": _COUNT | None,
}


def _check_top_level(
    top: dict[str, msgspec.Raw], source: str, entries: Mapping[str, object]
) -> None:
    for key in [key for key in top if key not in _TOP_LEVEL_TYPES]:
        if not _is_json(top[key]):  # `1e400`: msgspec.Raw passes it, our own readers do not
            del top[key]  # an unknown key is read by nobody: dropped, as the tolerant split does
    for key, kind in _TOP_LEVEL_TYPES.items():
        if key not in top:
            continue
        try:
            value = msgspec.json.decode(top[key], type=kind)
        except msgspec.ValidationError as exc:
            raise RepodataError(
                f"{source}: '{key}' is malformed ({exc}); clients would refuse this repodata, "
                "so nothing was changed."
            ) from exc
        if key == "removed" and len(kept := removed_names(value, entries)) != len(value):
            top[key] = msgspec.Raw(msgspec.json.encode(kept))


def removed_names(names: list[str], listed: Container[str]) -> list[str]:
    """The entries of a `removed` list worth publishing. rattler reads each as
    <name>-<version>-<build>.conda/.tar.bz2 and refuses the whole repodata.json for one that
    is not (no such file can be in a channel: dropping it loses nothing); and its sparse
    reader hides a record whose file name is in `removed` while its whole-file reader and
    conda install it, so a name the document also lists as a record is dropped (the record,
    kept verbatim, wins) lest clients of one tree disagree on what it holds."""
    return [
        name
        for name in names
        if is_safe_filename(name) and name_from_filename(name) and name not in listed
    ]


def is_safe_filename(filename: str) -> bool:
    """True for a plain package basename we are willing to create on disk."""
    return (
        len(filename) <= MAX_FILENAME_BYTES
        and _SAFE_FILENAME.fullmatch(filename) is not None
        and ".." not in filename
    )


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


def normalize_timestamp_ms(value: int | float | None) -> int | None:
    """conda timestamps are milliseconds, but old records use seconds; conda tells them apart
    the same way (anything past year 9999 in seconds must be milliseconds)."""
    if value is None:
        return None
    return int(value) if value > 253402300799 else int(value * 1000)


def printable_name(text: str) -> str:
    """A file name safe to print in a log line (hostile names may hold control characters)."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 200 else shown[:200] + "..."
