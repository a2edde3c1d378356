"""The record gate: every record, from upstream repodata or a package's info/, is admitted here.

The schema is what clients parse, so that "what we publish, rattler reads" holds by
construction. Where it comes from (read in rattler's and conda's sources, not copied):

- rattler_conda_types `PackageRecord` (crates/rattler_conda_types/src/repo_data/mod.rs) and the
  serde helpers it uses (utils/serde.rs, no_arch_type.rs, package/run_exports.rs): `name`,
  `version`, `build` strings and `build_number` (u64) are required; `depends`, `constrains`,
  `flags` are lists of strings (null refused); `timestamp`/`indexed_timestamp` are i64 (a float,
  even 1.0 or -0, is refused) within jiff's range; `size`/`legacy_bz2_size` u64; `md5`,
  `sha256`, `legacy_bz2_md5` hex digests; `noarch` is a bool, "python", "generic" or "";
  `track_features` a string or list of strings (not null); `features`, `license`, `arch`,
  `platform`, ... strings or null; `subdir` a string (not null); `purls` PURLs (`pkg:`);
  `run_exports` an object of string lists; `extra_depends` a map of string lists. One record
  that breaks any of these makes rattler refuse the whole repodata.json. Its solver
  (crates/rattler_solve/src/resolvo/mod.rs) parses `depends`, `constrains` and `extra_depends`
  as lenient MatchSpecs with exact names and drops a record whose spec does not parse; its
  spec parser recurses (gate_cache.py bounds what it is given); its sparse index finds a
  record by the file name's part before the version, lowercased (so: lowercase names, no `-`
  in versions); names and versions parse as PackageName/Version.
- conda `PackageRecord` (conda/models/records.py, conda/auxlib/entity.py): IntegerFields refuse
  floats, `package_type` is an enum; conda/core/subdir_data.py skips records whose
  `record_version` is above 1 (and crashes logging it) and appends to the `depends` of `python`
  records, which must therefore have one.
- Our own needs: a file name that fits NAME_MAX with our temp names (records.is_safe_filename),
  name-version-build equal to the file name (the skip-by-name fast path relies on it, and on
  no `-` in version and build), the subdir it is listed in, a checksum to verify downloads by,
  lowercase hex, sizes and build numbers that fit SQLite and the disk-space check, JSON our
  own msgspec writers (shards) read back (record_json.py).

Where py-rattler can decide (MatchSpec, Version, PackageName) it does; its verdicts are cached
per distinct string in a `GateCache` (specs repeat across records about 20 times).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from mirror.core.gate_cache import (
    MAX_SPEC_CHARS,
    MAX_SPEC_NESTING,
    GateCache,
    parse_name,
    parse_spec,
    parse_version,
    spec_shape_is_safe,
)
from mirror.core.record_json import JsonProblem, decode_object
from mirror.core.records import (
    Record,
    RecordFields,
    Refusal,
    RefusalReason,
    expected_group,
    is_safe_filename,
    printable_name,
    split_extension,
)

__all__ = ["GateCache", "admit", "decode_record", "sane_timestamp"]

R = RefusalReason

# the largest package file we accept a record for: the biggest conda packages are a few GB;
# a record claiming more (2**62) would only break the disk-space check of every run
MAX_PACKAGE_SIZE_BYTES = 64 << 30
MAX_RECORD_BYTES = 1 << 20  # real records are under 100 kB, the largest metapackages included
MAX_BUILD_NUMBER = 2**63 - 1  # SQLite INTEGER (rattler: u64)
# conda and rattler read a timestamp up to 253402300799 as seconds, above as milliseconds;
# rattler (jiff) refuses anything past 9999-12-30, and nothing was built before 1970
SECONDS_UP_TO = 253_402_300_799
MAX_TIMESTAMP_S = 253_402_128_000  # 9999-12-30T00:00:00Z
MAX_TIMESTAMP_MS = MAX_TIMESTAMP_S * 1000

_HEX_DIGITS = "0123456789abcdef"
_BUILD = re.compile(r"[A-Za-z0-9_.+]+")
_PURL = re.compile(
    r"pkg:[A-Za-z][A-Za-z0-9.+-]*/(?:[^/?#@]+/)*[^/?#@]+(?:@[^?#]*)?(?:\?[^#]*)?(?:#.*)?"
)
_FIELD_AT = re.compile(r"at `\$\.([A-Za-z0-9_-]+)|missing required field `([^`]+)`")
_CHECKSUMS = (("sha256", 64), ("md5", 32), ("legacy_bz2_md5", 32))
# conda/models/enums.py PackageType: EnumField boxes a value or a member name
_PACKAGE_TYPES = frozenset(
    {
        "noarch_generic", "noarch_python", "virtual_private_env", "virtual_python_wheel",
        "virtual_python_egg_manageable", "virtual_python_egg_unmanageable",
        "virtual_python_egg_link", "virtual_system",
    }
)  # fmt: skip
_PACKAGE_TYPES_ANY_CASE = _PACKAGE_TYPES | {t.upper() for t in _PACKAGE_TYPES}


class _Refused(Exception):
    def __init__(self, reason: RefusalReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


def admit(
    filename: str,
    raw: bytes | msgspec.Raw,
    *,
    group: str,
    subdir: str,
    cache: GateCache | None = None,
) -> Record | Refusal:
    """The record of `filename` listed under `group` ("packages" or "packages.conda") of
    `subdir`, or why it is refused. Never raises; an accepted record keeps `raw` verbatim."""
    return _guarded(filename, raw, group, subdir, cache)


def decode_record(
    filename: str, group: str, raw: bytes | msgspec.Raw, cache: GateCache | None = None
) -> Record | Refusal:
    """admit() for callers that do not know the subdir yet (its consistency is not checked)."""
    return _guarded(filename, raw, group, None, cache)


def _guarded(
    filename: str,
    raw: bytes | msgspec.Raw,
    group: str,
    subdir: str | None,
    cache: GateCache | None,
) -> Record | Refusal:
    try:
        fields = _admit(filename, raw, group, subdir, cache or GateCache())
    except _Refused as refused:
        return Refusal(_shown(filename), refused.message, refused.reason, refused.field)
    except JsonProblem as problem:
        return Refusal(_shown(filename), problem.message, R(problem.reason), problem.field)
    except Exception as exc:  # a bug must refuse one record, never stop the others
        return Refusal(
            _shown(filename),
            f"the record gate failed on it ({type(exc).__name__}: {_shown(str(exc))}); refused",
            R.GATE_ERROR,
        )
    return Record(filename=filename, raw=raw, fields=fields)


def _shown(filename: object) -> str:
    return printable_name(filename) if isinstance(filename, str) else repr(filename)[:200]


def _admit(
    filename: str, raw: bytes | msgspec.Raw, group: str, subdir: str | None, cache: GateCache
) -> RecordFields:
    _check_filename(filename, group)
    data = bytes(raw)
    document = decode_object(data)
    fields = _typed(document)
    if len(data) > MAX_RECORD_BYTES:
        raise _Refused(
            R.TOO_LARGE,
            f"the record is {len(data):,} bytes; at most {MAX_RECORD_BYTES:,} are accepted",
        )
    _check_identity(fields, filename, subdir)
    if not _plainly_sound(fields):
        _check_numbers(fields)
        _check_checksums(fields)
    _check_strings(fields, document, cache)
    return fields


def _check_filename(filename: str, group: str) -> None:
    if not is_safe_filename(filename):
        raise _Refused(
            R.BAD_FILENAME,
            "file name is not a plain .conda/.tar.bz2 basename (path, unexpected characters or "
            "longer than the filesystem allows with our temp names); refused",
        )
    if expected_group(filename) != group:
        raise _Refused(R.WRONG_GROUP, f"listed under '{group}' but its extension belongs elsewhere")


def _typed(document: dict[str, Any]) -> RecordFields:
    try:
        fields = msgspec.convert(document, RecordFields)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _FIELD_AT.search(text)
        key = (found.group(1) or found.group(2)) if found else None
        if "missing required field" in text:
            reason = R.MISSING_KEY
        elif key in ("timestamp", "indexed_timestamp"):
            reason = R.BAD_TIMESTAMP
        else:
            reason = R.BAD_TYPE
        raise _Refused(reason, f"record is malformed: {text}", key) from None
    if "extra_depends" in document:  # a map: kept out of the (hashable) fields
        try:
            msgspec.convert(document["extra_depends"], dict[str, list[str]])
        except msgspec.ValidationError as exc:
            raise _Refused(
                R.BAD_TYPE, f"record is malformed: {exc} in `$.extra_depends`", "extra_depends"
            ) from None
    return fields


def _check_identity(fields: RecordFields, filename: str, subdir: str | None) -> None:
    stem, _ = split_extension(filename)
    claimed = f"{fields.name}-{fields.version}-{fields.build}"
    if claimed != stem:
        raise _Refused(
            R.NAME_MISMATCH,
            f"the record, which says {printable_name(claimed)}, does not match its file name",
        )
    if subdir is not None and fields.subdir and fields.subdir != subdir:
        raise _Refused(
            R.WRONG_SUBDIR,
            f"the record says subdir {printable_name(fields.subdir)!r} but is listed in {subdir!r}",
            "subdir",
        )


def _plainly_sound(f: RecordFields) -> bool:
    """The common case of _check_numbers and _check_checksums in one expression (it may say
    False for a sound record, never True for an unsound one: they then say what is wrong)."""
    return (
        0 <= f.build_number <= MAX_BUILD_NUMBER
        and (f.size is None or 0 <= f.size <= MAX_PACKAGE_SIZE_BYTES)
        and (f.timestamp is None or sane_timestamp(f.timestamp))
        and f.indexed_timestamp is None
        and f.legacy_bz2_size is None
        and f.legacy_bz2_md5 is None
        and f.record_version == 0
        and (f.sha256 is not None or f.md5 is not None)
        and (f.sha256 is None or (len(f.sha256) == 64 and not f.sha256.strip(_HEX_DIGITS)))
        and (f.md5 is None or (len(f.md5) == 32 and not f.md5.strip(_HEX_DIGITS)))
    )


def _check_numbers(fields: RecordFields) -> None:
    if not 0 <= fields.build_number <= MAX_BUILD_NUMBER:
        raise _Refused(
            R.BAD_NUMBER,
            f"build_number {fields.build_number} is not a whole number from 0 to 2**63-1 - at "
            "`$.build_number`",
            "build_number",
        )
    for key in ("size", "legacy_bz2_size"):
        value = getattr(fields, key)
        if value is None:
            continue
        if value < 0:
            raise _Refused(R.BAD_NUMBER, f"{key} is negative - at `$.{key}`", key)
        if value > MAX_PACKAGE_SIZE_BYTES:
            raise _Refused(
                R.TOO_LARGE,
                f"{key} is {value} bytes, more than the {MAX_PACKAGE_SIZE_BYTES >> 30} GiB a "
                f"package may have - at `$.{key}`",
                key,
            )
    for key in ("timestamp", "indexed_timestamp"):
        value = getattr(fields, key)
        if value is not None and not sane_timestamp(value):
            raise _Refused(
                R.BAD_TIMESTAMP,
                f"{key} {value} is not a time from 1970 to 9999 in seconds or milliseconds - "
                f"at `$.{key}`",
                key,
            )
    if fields.record_version not in (0, 1):
        raise _Refused(
            R.BAD_VALUE,
            f"record_version {fields.record_version}: conda skips such records (and fails "
            "logging it) - at `$.record_version`",
            "record_version",
        )


def sane_timestamp(value: int) -> bool:
    """Seconds or milliseconds (told apart as conda and rattler do) from 1970 to 9999."""
    if value < 0:
        return False
    return value <= (MAX_TIMESTAMP_S if value <= SECONDS_UP_TO else MAX_TIMESTAMP_MS)


def _check_checksums(fields: RecordFields) -> None:
    for key, length in _CHECKSUMS:
        value = getattr(fields, key)
        if value is not None and (len(value) != length or value.strip(_HEX_DIGITS)):
            raise _Refused(
                R.BAD_CHECKSUM, f"{key} is not {length} lowercase hex digits - at `$.{key}`", key
            )
    if fields.sha256 is None and fields.md5 is None:
        raise _Refused(
            R.NO_CHECKSUM, "record has neither sha256 nor md5, so a download could not be verified"
        )


def _check_strings(fields: RecordFields, document: dict[str, Any], cache: GateCache) -> None:
    """Name, version, build, the specs and the enum-like strings, as rattler and conda read
    them. The common case is a few set lookups: strings already seen to parse."""
    specs = cache.specs.good
    if (
        fields.name in cache.names.good
        and fields.version in cache.versions.good
        and specs.issuperset(fields.depends)
        and specs.issuperset(fields.constrains)
        and _BUILD.fullmatch(fields.build)
        and fields.package_type is None
        and fields.purls is None
        and fields.run_exports is None
        and fields.name != "python"
        and "extra_depends" not in document
    ):
        return
    found = cache.names.first_problem((fields.name,), parse_name)
    if found is not None:
        raise _Refused(R.BAD_NAME, f"name is not a package name ({_said(found[1])})", "name")
    found = cache.versions.first_problem((fields.version,), parse_version)
    if found is not None:
        raise _Refused(R.BAD_VERSION, f"version does not parse ({_said(found[1])})", "version")
    if not _BUILD.fullmatch(fields.build):
        raise _Refused(
            R.BAD_BUILD, "build may hold only letters, digits and '_', '.', '+'", "build"
        )
    extra = document.get("extra_depends") or {}
    lists: list[tuple[str, tuple[str, ...]]] = [
        ("depends", fields.depends),
        ("constrains", fields.constrains),
        *(("extra_depends", tuple(specs)) for specs in extra.values()),
    ]
    for key, texts in lists:
        found = cache.specs.first_problem(texts, parse_spec)
        if found is not None:
            raise _Refused(
                R.BAD_SPEC,
                f"{key} holds {printable_name(found[0])!r}, which is no MatchSpec "
                f"({_said(found[1])})",
                key,
            )
    _check_run_exports(fields)
    _check_conda_strings(fields, document)


def _check_run_exports(fields: RecordFields) -> None:
    """Build tools parse run_exports as specs; a record cannot crash them either."""
    exports = fields.run_exports
    if exports is None:
        return
    for key in ("weak", "strong", "noarch", "weak_constrains", "strong_constrains"):
        for text in getattr(exports, key):
            if not spec_shape_is_safe(text):
                raise _Refused(
                    R.BAD_SPEC,
                    f"run_exports.{key} holds a spec longer than {MAX_SPEC_CHARS} characters or "
                    f"nested more than {MAX_SPEC_NESTING} deep",
                    "run_exports",
                )


def _check_conda_strings(fields: RecordFields, document: dict[str, Any]) -> None:
    if fields.package_type is not None and fields.package_type not in _PACKAGE_TYPES_ANY_CASE:
        raise _Refused(R.BAD_VALUE, "package_type is none of conda's package types", "package_type")
    for purl in fields.purls or ():
        if not _PURL.fullmatch(purl):
            raise _Refused(
                R.BAD_VALUE, f"purls holds {printable_name(purl)!r}, no pkg: URL", "purls"
            )
    python = fields.name == "python" and fields.version.startswith(("2.", "3."))
    if python and "depends" not in document:
        raise _Refused(
            R.MISSING_KEY,
            "a python record needs 'depends': conda appends pip to it while reading",
            "depends",
        )


def _said(problem: str) -> str:
    return printable_name(problem.splitlines()[0] if problem else problem)
