"""The record gate, case by case: what it admits rattler reads, and each refusal names the file,
the field and a reason. `RATTLER` marks the rules that are rattler's own (it refuses the record
too); `STRICTER` the ones that are ours or conda's (rattler would load the record)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mirror.core.gate import GateCache, admit
from mirror.core.package_records import InvalidPackage, local_record
from mirror.core.records import (
    MAX_FILENAME_BYTES,
    Record,
    Refusal,
    RefusalReason,
    is_safe_filename,
    printable_name,
)
from tests.support.rattler_reads import rattler_refusal

R = RefusalReason
FN = "a-1.0-h_0.conda"
GOOD: dict[str, Any] = {
    "name": "a",
    "version": "1.0",
    "build": "h_0",
    "build_number": 0,
    "depends": ["python >=3.8", "libgcc-ng >=12"],
    "size": 10,
    "sha256": "0" * 64,
    "md5": "1" * 32,
    "subdir": "linux-64",
    "timestamp": 1_700_000_000_000,
}
DROP = object()
RATTLER, STRICTER = True, False


def body(**changes: Any) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not DROP}).encode()


def tail(member: bytes) -> bytes:
    return body()[:-1] + b", " + member + b"}"


def named(length: int) -> tuple[str, bytes]:
    """A file name of `length` bytes whose record matches it."""
    name = "n" * (length - len("-1.0-h_0.conda"))
    return f"{name}-1.0-h_0.conda", body(name=name)


@dataclass(frozen=True)
class Case:
    raw: bytes
    reason: RefusalReason
    says: str
    rattler_refuses: bool
    filename: str = FN


CASES: dict[str, Case] = {
    # the examples
    "timestamp-float": Case(
        body(timestamp=1700000000.5), R.BAD_TIMESTAMP, "`$.timestamp`", RATTLER
    ),
    "timestamp-1e300": Case(tail(b'"timestamp": 1e300'), R.DUPLICATE_KEY, "timestamp", RATTLER),
    "timestamp-1e300-alone": Case(
        body(timestamp=DROP)[:-1] + b', "timestamp": 1e300}', R.BAD_TIMESTAMP, "float", RATTLER
    ),
    "version-!!!==": Case(
        body(version="!!!=="), R.NAME_MISMATCH, "which says a-!!!==-h_0", RATTLER
    ),
    "version-!!!==-named": Case(
        body(version="!!!=="), R.BAD_VERSION, "version does not parse", RATTLER, "a-!!!==-h_0.conda"
    ),
    "size-2**62": Case(body(size=2**62), R.TOO_LARGE, "64 GiB", STRICTER),
    "summary-not-utf8": Case(
        body(summary="@")[:-1].replace(b'"@"', b'"caf\xe9"') + b"}", R.BAD_UTF8, "UTF-8", RATTLER
    ),
    "filename-255": Case(named(255)[1], R.BAD_FILENAME, "not a plain", STRICTER, named(255)[0]),
    "filename-212": Case(named(212)[1], R.BAD_FILENAME, "not a plain", STRICTER, named(212)[0]),
    # numbers rattler reads as integers
    "timestamp-1.0": Case(body(timestamp=1.0), R.BAD_TIMESTAMP, "got `float`", RATTLER),
    "timestamp-true": Case(body(timestamp=True), R.BAD_TIMESTAMP, "got `bool`", RATTLER),
    "timestamp--0": Case(
        body(timestamp=DROP)[:-1] + b', "timestamp": -0}', R.BAD_JSON, "-0", RATTLER
    ),
    "timestamp-past-9999": Case(body(timestamp=253402207201), R.BAD_TIMESTAMP, "9999", RATTLER),
    "timestamp-ms-past-9999": Case(
        body(timestamp=253402207200999), R.BAD_TIMESTAMP, "9999", RATTLER
    ),
    "timestamp-2**63": Case(body(timestamp=2**63), R.BAD_TIMESTAMP, "9999", RATTLER),
    "timestamp-before-1970": Case(body(timestamp=-5), R.BAD_TIMESTAMP, "1970", STRICTER),
    "indexed-timestamp-float": Case(
        body(indexed_timestamp=1.5), R.BAD_TIMESTAMP, "`$.indexed_timestamp`", RATTLER
    ),
    "size-2**64": Case(body(size=2**64), R.TOO_LARGE, "`$.size`", RATTLER),
    "size-negative": Case(body(size=-1), R.BAD_NUMBER, "size is negative", RATTLER),
    "size-1.5": Case(body(size=1.5), R.BAD_TYPE, "`$.size`", RATTLER),
    "build-number-2**63": Case(body(build_number=2**63), R.BAD_NUMBER, "build_number", STRICTER),
    "build-number-missing": Case(body(build_number=DROP), R.MISSING_KEY, "`build_number`", RATTLER),
    "legacy-bz2-size-negative": Case(
        body(legacy_bz2_size=-1), R.BAD_NUMBER, "legacy_bz2_size", RATTLER
    ),
    "record-version-2": Case(body(record_version=2), R.BAD_VALUE, "conda skips", STRICTER),
    "number-1e400": Case(tail(b'"zz": 1e400'), R.BAD_NUMBER, "out of range", STRICTER),
    "nan": Case(tail(b'"zz": NaN'), R.BAD_JSON, "not valid JSON", RATTLER),
    "infinity": Case(tail(b'"zz": -Infinity'), R.BAD_JSON, "not valid JSON", RATTLER),
    # Unicode
    "surrogate-in-license": Case(
        tail(b'"license": "MIT\\ud800"'), R.BAD_UTF8, "surrogate", RATTLER
    ),
    "surrogate-in-key": Case(tail(b'"\\udc00": 1'), R.BAD_UTF8, "surrogate", RATTLER),
    "surrogate-in-ignored-key": Case(tail(b'"zz": "\\ud83d"'), R.BAD_UTF8, "surrogate", STRICTER),
    "not-utf8-in-key": Case(tail(b'"\xff": 1'), R.BAD_UTF8, "UTF-8", RATTLER),
    # structure
    "nested-33": Case(tail(b'"zz": ' + b"[" * 32 + b"]" * 32), R.TOO_DEEP, "32", STRICTER),
    "nested-129": Case(
        tail(b'"run_exports": ' + b"[" * 128 + b"]" * 128), R.TOO_DEEP, "32", RATTLER
    ),
    "duplicate-top-level": Case(tail(b'"size": 10'), R.DUPLICATE_KEY, "'size' twice", RATTLER),
    "duplicate-spaced": Case(
        body()[:-1] + b', "size" : 10}', R.DUPLICATE_KEY, "'size' twice", RATTLER
    ),
    "duplicate-in-run-exports": Case(
        tail(b'"run_exports": {"weak": [], "weak": ["a"]}'),
        R.DUPLICATE_KEY,
        "'run_exports.weak' twice",
        RATTLER,
    ),
    "not-an-object": Case(b"[1, 2]", R.BAD_JSON, "malformed", RATTLER),
    # types
    "depends-null": Case(body(depends=None), R.BAD_TYPE, "`$.depends`", RATTLER),
    "constrains-null": Case(body(constrains=None), R.BAD_TYPE, "`$.constrains`", RATTLER),
    "track-features-null": Case(body(track_features=None), R.BAD_TYPE, "track_features", RATTLER),
    "features-list": Case(body(features=["mkl"]), R.BAD_TYPE, "`$.features`", RATTLER),
    "noarch-weird": Case(body(noarch="weird"), R.BAD_TYPE, "`$.noarch`", RATTLER),
    "subdir-null": Case(body(subdir=None), R.BAD_TYPE, "`$.subdir`", RATTLER),
    "run-exports-weak-null": Case(
        body(run_exports={"weak": None}), R.BAD_TYPE, "run_exports", RATTLER
    ),
    "extra-depends-a-string": Case(
        body(extra_depends={"x": "a"}), R.BAD_TYPE, "extra_depends", RATTLER
    ),
    "flags-a-number": Case(body(flags=5), R.BAD_TYPE, "`$.flags`", RATTLER),
    "purls-not-pkg": Case(body(purls=["pypi/x"]), R.BAD_VALUE, "purls", RATTLER),
    "python-site-packages-path-int": Case(
        body(python_site_packages_path=5), R.BAD_TYPE, "python_site_packages_path", RATTLER
    ),
    "package-type-unknown": Case(body(package_type="wheel"), R.BAD_VALUE, "package_type", STRICTER),
    # checksums
    "sha256-uppercase": Case(body(sha256="A" * 64), R.BAD_CHECKSUM, "sha256", STRICTER),
    "md5-short": Case(body(md5="1" * 31), R.BAD_CHECKSUM, "md5", RATTLER),
    "legacy-md5-bad": Case(body(legacy_bz2_md5="zz"), R.BAD_CHECKSUM, "legacy_bz2_md5", RATTLER),
    "no-checksum": Case(body(sha256=DROP, md5=DROP), R.NO_CHECKSUM, "neither", STRICTER),
    # specs, names, versions, builds
    "depends-not-a-spec": Case(body(depends=["!!!=="]), R.BAD_SPEC, "'!!!=='", STRICTER),
    "depends-a-glob": Case(body(depends=["py* >=1"]), R.BAD_SPEC, "glob", STRICTER),
    "constrains-empty": Case(body(constrains=[""]), R.BAD_SPEC, "constrains", STRICTER),
    # rattler loads these, but its spec parser recurses: parsing one crashes the process (py-rattler
    # 0.28: a segfault at a few thousand parentheses), in a solve of any client as in ours
    "depends-nested-5000-deep": Case(
        body(depends=["a " + "(" * 5000 + ">=1" + ")" * 5000]), R.BAD_SPEC, "crashes", STRICTER
    ),
    "depends-17-parentheses": Case(
        body(depends=["a " + "(" * 17 + ">=1" + ")" * 17]), R.BAD_SPEC, "nested", STRICTER
    ),
    "depends-2000-characters": Case(
        body(depends=["a >=1" + ",>=1" * 500]), R.BAD_SPEC, "longer than", STRICTER
    ),
    "run-exports-nested-5000-deep": Case(
        body(run_exports={"weak": ["a " + "(" * 5000]}), R.BAD_SPEC, "run_exports.weak", STRICTER
    ),
    "extra-depends-not-a-spec": Case(
        body(extra_depends={"x": ["a >=1,,<"]}), R.BAD_SPEC, "extra_depends", STRICTER
    ),
    # rattler loads the next two files, but cannot look the name up in them
    "name-with-plus": Case(body(name="a+b"), R.BAD_NAME, "name", RATTLER, "a+b-1.0-h_0.conda"),
    "name-uppercase": Case(body(name="A"), R.BAD_NAME, "lowercase", RATTLER, "A-1.0-h_0.conda"),
    "version-with-dash": Case(
        body(version="1.0-1"), R.BAD_VERSION, "'-'", RATTLER, "a-1.0-1-h_0.conda"
    ),
    "version-underscore": Case(
        body(version="_"), R.BAD_VERSION, "version", RATTLER, "a-_-h_0.conda"
    ),
    "build-with-equals": Case(body(build="h=0"), R.BAD_BUILD, "build", STRICTER, "a-1.0-h=0.conda"),
    "python-without-depends": Case(
        body(name="python", version="3.12.0", depends=DROP),
        R.MISSING_KEY,
        "pip",
        STRICTER,
        "python-3.12.0-h_0.conda",
    ),
    # where it is listed
    "wrong-group": Case(body(), R.WRONG_GROUP, "listed under", STRICTER, "a-1.0-h_0.tar.bz2"),
    "wrong-subdir": Case(body(subdir="osx-64"), R.WRONG_SUBDIR, "'osx-64'", STRICTER),
    "path-in-file-name": Case(body(), R.BAD_FILENAME, "not a plain", RATTLER, "../" + FN),
    "record-of-2-MB": Case(
        tail(b'"about": "' + b"x" * (2 << 20) + b'"'), R.TOO_LARGE, "bytes", STRICTER
    ),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_a_record_clients_cannot_read_alike_is_refused_naming_field_and_reason(
    case_id: str, tmp_path: Path
) -> None:
    case = CASES[case_id]
    verdict = admit(case.filename, case.raw, group="packages.conda", subdir="linux-64")

    assert isinstance(verdict, Refusal), verdict
    assert (verdict.reason, verdict.filename) == (case.reason, printable_name(case.filename))
    assert case.says in verdict.message, verdict.message
    said = rattler_refusal(tmp_path, "linux-64", [(case.filename, "packages.conda", case.raw)])
    assert (said is not None) == case.rattler_refuses, said


@pytest.mark.parametrize(
    ("case_id", "raw"),
    [
        ("good", body()),
        ("md5-only", body(sha256=DROP)),
        ("timestamp-in-seconds", body(timestamp=1_700_000_000)),
        ("timestamp-null", body(timestamp=None)),
        ("noarch-empty-string", body(noarch="")),
        ("noarch-true", body(noarch=True)),
        ("track-features-list", body(track_features=["a", "b"])),
        ("run-exports", body(run_exports={"weak": ["a >=1,<2"], "strong": []})),
        ("purls", body(purls=["pkg:pypi/a@1.0"])),
        ("extra-depends", body(extra_depends={"test": ["pytest >=8"]})),
        ("conditional-depends", body(depends=['numpy[when="python >=3.9"]'])),
        ("huge-ignored-integer", tail(b'"zz": 99999999999999999999999')),
        ("repeated-key-in-an-ignored-value", tail(b'"zz": {"k": 1, "k": 2}')),
        ("colon-inside-a-string", tail(b'"about": "a \\": b"')),
        ("nested-32", tail(b'"zz": ' + b"[" * 31 + b"]" * 31)),
        ("brackets-inside-a-string", tail(b'"summary": "' + b"[{" * 100 + b'"')),
        ("minus-zero-inside-a-string", tail(b'"summary": "x -0 [-0] -0.5"')),
        ("surrogate-pair", tail(b'"summary": "\\ud83d\\ude00"')),
        ("utf8-summary", tail('"summary": "café ✓"'.encode())),
        ("fn-url-channel", body(fn="other.conda", url="http://x/y.conda", channel="z")),
        ("filename-211", named(MAX_FILENAME_BYTES)[1]),
    ],
)
def test_records_clients_read_are_admitted_verbatim(
    case_id: str, raw: bytes, tmp_path: Path
) -> None:
    filename = named(MAX_FILENAME_BYTES)[0] if case_id == "filename-211" else FN
    verdict = admit(filename, raw, group="packages.conda", subdir="linux-64")

    assert isinstance(verdict, Record), verdict
    assert verdict.raw is raw
    assert rattler_refusal(tmp_path, "linux-64", [(filename, "packages.conda", raw)]) is None


def test_a_file_name_has_room_for_our_temp_names_within_name_max() -> None:
    longest, _ = named(MAX_FILENAME_BYTES)
    assert is_safe_filename(longest) and not is_safe_filename("n" + longest)
    assert len(("." + longest + ".4194304.140737488355327.tmp").encode()) <= 255
    assert len((".mirror-" + "0" * 32 + ".tmp").encode()) + MAX_FILENAME_BYTES == 255


def test_the_cache_remembers_rattlers_verdicts_without_changing_them() -> None:
    cache = GateCache()
    first = admit(
        FN, body(depends=["!!!=="]), group="packages.conda", subdir="linux-64", cache=cache
    )
    again = admit(
        FN, body(depends=["!!!=="]), group="packages.conda", subdir="linux-64", cache=cache
    )
    assert isinstance(first, Refusal) and first == again
    assert "!!!==" in cache.specs.bad and "python >=3.8" not in cache.specs.good
    assert isinstance(
        admit(FN, body(), group="packages.conda", subdir="linux-64", cache=cache), Record
    )
    assert "python >=3.8" in cache.specs.good and "1.0" in cache.versions.good
    assert first == admit(FN, body(depends=["!!!=="]), group="packages.conda", subdir="linux-64")


def test_admit_takes_msgspec_raw_slices_of_a_document() -> None:
    raw = msgspec.Raw(body())
    verdict = admit(FN, raw, group="packages.conda", subdir="linux-64")
    assert isinstance(verdict, Record) and verdict.raw is raw


# -- local records -------------------------------------------------------------------------


def local(index: dict[str, Any], filename: str = FN) -> bytes:
    return local_record(
        filename, "linux-64", index, size=10, sha256="0" * 64, md5="1" * 32, run_exports=None
    )


def test_a_local_record_names_only_its_own_file() -> None:
    index = {**GOOD, "fn": "other-1.0-0.conda", "url": "https://evil/x.conda", "channel": "evil"}
    record = json.loads(local(index))
    assert not {"fn", "url", "channel"} & set(record)
    assert (record["name"], record["size"], record["sha256"]) == ("a", 10, "0" * 64)


@pytest.mark.parametrize(
    ("changes", "reason", "words"),
    [
        ({"timestamp": 1700000000.5}, R.BAD_TIMESTAMP, "'timestamp': record is malformed"),
        ({"timestamp": 1e300}, R.BAD_TIMESTAMP, "`$.timestamp`"),
        ({"size_in_index": 2**70, "depends": ["!!!=="]}, R.BAD_SPEC, "'depends'"),
        ({"license": ["MIT"]}, R.BAD_TYPE, "'license'"),
        ({"noarch": 7}, R.BAD_TYPE, "'noarch'"),
    ],
)
def test_a_local_package_passes_the_same_gate(
    changes: dict[str, Any], reason: RefusalReason, words: str
) -> None:
    with pytest.raises(InvalidPackage, match=r"^info/index\.json: ") as raised:
        local({**GOOD, **changes})
    assert raised.value.gate_reason == reason and words in str(raised.value)


def test_a_local_record_says_what_to_rename_or_move() -> None:
    with pytest.raises(InvalidPackage, match=r"which says a-1\.0-h_0; rename the file"):
        local(GOOD, "b-1.0-h_0.conda")
    with pytest.raises(InvalidPackage, match="subdir 'osx-64' but the file is in 'linux-64'"):
        local({**GOOD, "subdir": "osx-64"})
