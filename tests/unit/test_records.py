"""Upstream repodata parsing: records kept verbatim, hostile entries refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from mirror.core.gate import decode_record
from mirror.core.records import (
    Record,
    Refusal,
    is_safe_filename,
    name_from_filename,
    parse_repodata,
)
from mirror.core.repodata_doc import PublishedRecord, render_repodata
from mirror.errors import RepodataError
from tests.conftest import SHARED_REAL
from tests.support.rattler_reads import rattler_refusal

GOOD = {
    "name": "a",
    "version": "1.0",
    "build": "h_0",
    "build_number": 0,
    "size": 10,
    "sha256": "0" * 64,
    "md5": "1" * 32,
    "subdir": "linux-64",
}


def decode(filename: str, record: object, group: str | None = None) -> Record | Refusal:
    group = group or ("packages.conda" if filename.endswith(".conda") else "packages")
    return decode_record(filename, group, msgspec.Raw(json.dumps(record).encode()))


def test_a_good_record_keeps_its_exact_bytes() -> None:
    raw = b'{"name":"a","version":"1.0",  "build":"h_0","build_number":0,"sha256":"'
    raw += b"0" * 64 + b'","zz":[1]}'
    parsed = parse_repodata(b'{"packages.conda":{"a-1.0-h_0.conda":' + raw + b"}}", source="t")
    group, entry = parsed.entries["a-1.0-h_0.conda"]
    record = decode_record("a-1.0-h_0.conda", group, entry)
    assert isinstance(record, Record)
    assert bytes(record.raw) == raw


@pytest.mark.parametrize(
    ("filename", "record", "reason"),
    [
        ("../../etc/x.conda", GOOD, "not a plain"),
        ("/etc/passwd.conda", GOOD, "not a plain"),
        ("a/../../b-1-0.conda", GOOD, "not a plain"),
        ("a-1.0-h_0.conda\x00.txt", GOOD, "not a plain"),
        ("a-1.0-h\n_0.conda", GOOD, "not a plain"),
        (".hidden-1-0.conda", GOOD, "not a plain"),
        ("a-1.0-h_0.zip", GOOD, "not a plain"),
        ("a..b-1-0.conda", GOOD, "not a plain"),
        ("x" * 300 + "-1-0.conda", GOOD, "not a plain"),
        ("a-1.0-h_0.tar.bz2", GOOD, None),  # fine as a .tar.bz2 under "packages"
        ("b-1.0-h_0.conda", GOOD, "does not match its file name"),
        ("a-1.0-h_0.conda", {**GOOD, "name": 5}, "malformed"),
        ("a-1.0-h_0.conda", {**GOOD, "size": "10"}, "malformed"),
        ("a-1.0-h_0.conda", {**GOOD, "size": -1}, "negative"),
        ("a-1.0-h_0.conda", {**GOOD, "build_number": True}, "malformed"),
        ("a-1.0-h_0.conda", {**GOOD, "sha256": "xyz"}, "sha256 is not"),
        ("a-1.0-h_0.conda", {**GOOD, "md5": "A" * 32}, "md5 is not"),
        (
            "a-1.0-h_0.conda",
            {k: v for k, v in GOOD.items() if k not in ("sha256", "md5")},
            "neither sha256 nor md5",
        ),
        ("a-1.0-h_0.conda", [1, 2], "malformed"),
        ("a-1.0-h_0.conda", {"version": "1.0", "build": "h_0"}, "malformed"),
    ],
)
def test_hostile_or_broken_records_are_refused_by_name(
    filename: str, record: object, reason: str | None
) -> None:
    result = decode(filename, record)
    if reason is None:
        assert isinstance(result, Record)
        return
    assert isinstance(result, Refusal)
    assert reason in result.message
    assert "\x00" not in result.filename and "\n" not in result.filename


def test_a_conda_file_listed_under_packages_is_refused() -> None:
    result = decode("a-1.0-h_0.conda", GOOD, group="packages")
    assert isinstance(result, Refusal) and "extension" in result.message


@pytest.mark.parametrize(
    ("tail", "refused_key"),
    [
        (b', "name": "b"', "name"),  # conda would read "b", rattler refuses the document
        (b', "depends": [], "depends": ["evil"]', "depends"),
        (b', "x": {"k": 1, "k": 2}', None),  # repeats inside a nested value bother no reader
        (b', "about": "a \\": b"', None),  # a '":' inside a string is no key
        (b', "zz": {"name": "n"}', None),
    ],
)
def test_records_with_a_repeated_key_are_refused_naming_it(
    tail: bytes, refused_key: str | None
) -> None:
    body = json.dumps(GOOD).encode()[:-1] + tail + b"}"
    result = decode_record("a-1.0-h_0.conda", "packages.conda", msgspec.Raw(body))
    if refused_key is None:
        assert isinstance(result, Record) and bytes(result.raw) == body
    else:
        assert isinstance(result, Refusal)
        assert result.message == f"record has the key '{refused_key}' twice; refused"


def test_md5_only_records_from_old_channels_are_accepted() -> None:
    record = {k: v for k, v in GOOD.items() if k != "sha256"}
    assert isinstance(decode("a-1.0-h_0.conda", record), Record)


@pytest.mark.parametrize(
    "body",
    [b"<html>oops", b"", b"[1,2]", b'{"packages": [1]}', b'{"packages": {"a": 1', b"\xff\xfe"],
)
def test_invalid_documents_raise_a_clear_repodata_error(body: bytes) -> None:
    with pytest.raises(RepodataError, match=r"^https://up/x/linux-64: "):
        parse_repodata(body, source="https://up/x/linux-64")


def test_filenames() -> None:
    assert is_safe_filename("python-3.12.0-hab00c5b_0_cpython.conda")
    assert is_safe_filename("_libgcc_mutex-0.1-conda_forge.tar.bz2")
    assert is_safe_filename("pkg-1!2.0-py_0.tar.bz2")
    assert not is_safe_filename("repodata.json")
    assert name_from_filename("python-dateutil-2.9.0-pyhd8ed1ab_0.conda") == "python-dateutil"
    assert name_from_filename("noversion.conda") is None


def test_render_is_deterministic_and_keeps_unknown_top_level_keys() -> None:
    records = [
        PublishedRecord("b-1-0.conda", b'{"name":"b"}'),
        PublishedRecord("a-1-0.tar.bz2", b'{"name":"a"}'),
        PublishedRecord("a-1-0.conda", b'{"name":"a"}'),
    ]
    top = {
        "info": b'{"subdir":"x","base_url":"https://cdn/","extra":1}',
        "removed": b'["old-1-0.conda"]',
        "zzz": b'{"k":[1]}',
        "repodata_version": b"2",
    }
    first = render_repodata("linux-64", records, top)
    assert first == render_repodata("linux-64", list(reversed(records)), top)
    data = json.loads(first)
    assert list(data) == [
        "info",
        "packages",
        "packages.conda",
        "removed",
        "repodata_version",
        "zzz",
    ]
    assert data["info"] == {"extra": 1, "subdir": "linux-64"}
    assert list(data["packages.conda"]) == ["a-1-0.conda", "b-1-0.conda"]
    assert data["removed"] == ["old-1-0.conda"] and data["zzz"] == {"k": [1]}
    assert data["repodata_version"] == 1


@pytest.mark.parametrize(
    "name",
    [
        "anaconda-r_linux-64.json",
        "pytorch_linux-64.json",
        "conda-forge-numpy-linux-64.json",
        "anaconda-main_noarch.json",
    ],
)
def test_real_upstream_repodata_round_trips_record_for_record(name: str, tmp_path: Path) -> None:
    """Every record is published byte for byte, except those rattler cannot read either (mamba's
    conda-forge sample has `"depends": null`, which makes rattler refuse the whole file)."""
    path = SHARED_REAL / "repodata" / name
    if not path.exists():
        pytest.skip("shared real test data not present")
    original = json.loads(path.read_bytes())
    parsed = parse_repodata(path.read_bytes(), source=name)
    records = []
    refused = set()
    for filename, (group, raw) in parsed.entries.items():
        decoded = decode_record(filename, group, raw)
        if isinstance(decoded, Refusal):
            entry = [(filename, group, bytes(raw))]
            assert rattler_refusal(tmp_path / filename, "linux-64", entry), decoded
            refused.add(filename)
            continue
        records.append(PublishedRecord(filename, decoded.raw))
    subdir = original.get("info", {}).get("subdir", "linux-64")
    rendered = json.loads(render_repodata(subdir, records, parsed.top_level))
    for group in ("packages", "packages.conda"):
        kept = {k: v for k, v in original.get(group, {}).items() if k not in refused}
        assert rendered[group] == kept
    for key in set(original) - {"info", "packages", "packages.conda"}:
        assert rendered[key] == original[key]
