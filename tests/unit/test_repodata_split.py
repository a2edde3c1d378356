"""One record with bytes no decoder accepts is refused alone; the rest of the subdir goes on."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.core.filters import FilterRules, select
from mirror.core.json_split import SplitError, object_members
from mirror.core.records import RefusalReason, parse_repodata
from mirror.errors import RepodataError

NOW_MS = 1_760_000_000_000


def record(name: str, **extra: Any) -> bytes:
    fields = {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "depends": [],
        "sha256": "a" * 64,
        "size": 10,
        "subdir": "linux-64",
        **extra,
    }
    return json.dumps(fields).encode()


def document(records: dict[bytes, bytes]) -> bytes:
    members = b",".join(b'"' + key + b'":' + raw for key, raw in records.items())
    return b'{"info":{"subdir":"linux-64"},"packages":{},"packages.conda":{' + members + b"}}"


def test_a_record_with_a_byte_that_is_not_utf8_is_refused_and_the_others_selected() -> None:
    bad = record("bad").replace(b'"depends"', b'"summary":"caf\xe9","depends"')
    body = document({b"good-1.0-0.conda": record("good"), b"bad-1.0-0.conda": bad})
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)  # what failed the whole subdir before
    selection = select(parse_repodata(body, source="t"), FilterRules(), NOW_MS, subdir="linux-64")
    assert [r.filename for r in selection.records] == ["good-1.0-0.conda"]
    assert [(r.filename, r.reason) for r in selection.refused] == [
        ("bad-1.0-0.conda", RefusalReason.BAD_UTF8)
    ]


def test_a_lone_surrogate_escape_is_refused_alone() -> None:
    bad = record("bad").replace(b'"depends"', b'"summary":"\\ud800","depends"')
    body = document({b"good-1.0-0.conda": record("good"), b"bad-1.0-0.conda": bad})
    selection = select(parse_repodata(body, source="t"), FilterRules(), NOW_MS, subdir="linux-64")
    assert [r.filename for r in selection.records] == ["good-1.0-0.conda"]
    assert [r.filename for r in selection.refused] == ["bad-1.0-0.conda"]


def test_a_file_name_that_is_not_utf8_is_refused_by_name() -> None:
    body = document({b"good-1.0-0.conda": record("good"), b"b\xffd-1.0-0.conda": record("bd")})
    selection = select(parse_repodata(body, source="t"), FilterRules(), NOW_MS, subdir="linux-64")
    assert [r.filename for r in selection.records] == ["good-1.0-0.conda"]
    (refusal,) = selection.refused
    assert refusal.reason == RefusalReason.BAD_FILENAME
    assert "\\xff" in refusal.filename


@pytest.mark.parametrize(
    "body",
    [
        b'{"packages": {"a-1-0.tar.bz2": {"name": "a"',  # truncated
        b"<html>502 Bad Gateway</html>",
        b'{"packages": {"a-1-0.tar.bz2": {}}} trailing',
    ],
)
def test_a_document_whose_structure_is_broken_still_fails_as_a_whole(body: bytes) -> None:
    with pytest.raises(RepodataError, match="not valid repodata JSON"):
        parse_repodata(body, source="upstream/linux-64/repodata.json")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(derandomize=True, max_examples=150, database=None)
@given(st.dictionaries(st.text(max_size=12), _json_values, max_size=6), st.sampled_from([0, 1, 2]))
def test_the_splitter_cuts_any_object_exactly_as_the_decoder_reads_it(
    members: dict[str, Any], indent: int
) -> None:
    body = json.dumps(members, indent=indent or None).encode()
    cut, end = object_members(body)
    assert body[end:].strip() == b""
    decoded = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    assert [json.loads(k) for k, _ in cut] == list(decoded)
    assert [bytes(v) for v in decoded.values()] == [v for _, v in cut]


def test_the_splitter_refuses_what_is_not_an_object() -> None:
    for body in (b"[]", b'{"a" 1}', b'{"a": 1,}', b'{"a": [1, 2}'):
        with pytest.raises(SplitError):
            object_members(body)
