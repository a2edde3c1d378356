"""repodata.json as bytes: the deterministic rendering and the in-place splice of small changes."""

from __future__ import annotations

import json
import random
import string

import msgspec
import pytest

from mirror.core.repodata_doc import (
    PublishedRecord,
    local_top_level,
    render_repodata,
    splice_records,
    with_indexed_timestamp,
)

SEED = 20_261_127


def record(name: str, version: str, build: str = "0", **extra: object) -> bytes:
    body = {"name": name, "version": version, "build": build, "depends": [], **extra}
    return msgspec.json.encode(body, order="sorted")


def joined(pieces: list[bytes | memoryview] | None) -> bytes:
    assert pieces is not None
    return b"".join(bytes(p) for p in pieces)


def render(records: dict[str, bytes], top: dict[str, bytes] | None = None) -> bytes:
    return render_repodata(
        "linux-64", [PublishedRecord(fn, raw) for fn, raw in records.items()], top
    )


# -- rendering --------------------------------------------------------------------------------


def test_render_writes_one_record_per_line_sorted_by_file_name_within_each_group() -> None:
    records = {
        "b-1-0.tar.bz2": record("b", "1"),
        "a-1-0.conda": record("a", "1"),
        "a-1-0.tar.bz2": record("a", "1"),
        "c-2-0.conda": record("c", "2"),
    }
    body = render(records)
    lines = body.split(b"\n")
    assert lines[0] == b"{" and lines[-2:] == [b"}", b""]
    assert lines[1] == b'"info":{"subdir":"linux-64"},'
    assert lines[2] == b'"packages":{'
    assert lines[3].startswith(b'"a-1-0.tar.bz2":{') and lines[3].endswith(b",")
    assert lines[4].startswith(b'"b-1-0.tar.bz2":{') and not lines[4].endswith(b",")
    assert lines[5:7] == [b"},", b'"packages.conda":{']
    assert lines[7].startswith(b'"a-1-0.conda":{')
    assert lines[8].startswith(b'"c-2-0.conda":{')
    document = json.loads(body)
    assert document["removed"] == [] and document["repodata_version"] == 1
    assert {**document["packages"], **document["packages.conda"]} == {
        fn: json.loads(raw) for fn, raw in records.items()
    }


def test_render_is_independent_of_input_order() -> None:
    records = {f"p{i}-1-0.conda": record(f"p{i}", "1") for i in range(20)}
    shuffled = list(records.items())
    random.Random(SEED).shuffle(shuffled)
    assert render(records) == render(dict(shuffled))


def test_render_keeps_newlines_of_pretty_upstream_records_out_of_the_line_structure() -> None:
    pretty = b'{\n  "build": "0",\n  "name": "a",\n  "note": "x\\ny",\n  "version": "1"\n}'
    body = render({"a-1-0.conda": pretty})
    record_lines = [line for line in body.split(b"\n") if line.startswith(b'"a-1-0.conda"')]
    assert len(record_lines) == 1
    assert json.loads(body)["packages.conda"]["a-1-0.conda"]["note"] == "x\ny"


def test_render_drops_upstream_base_url_and_announces_repodata_version_1() -> None:
    top = {
        "info": b'{"base_url":"https://cdn.example/x/","subdir":"osx-64","extra":1}',
        "repodata_version": b"2",
        "signatures": b'{\n"k": 1\n}',
    }
    document = json.loads(render({}, top))
    assert document["info"] == {"subdir": "linux-64", "extra": 1}
    assert document["repodata_version"] == 1
    assert document["signatures"] == {"k": 1}
    assert document["packages"] == {} and document["packages.conda"] == {}
    assert local_top_level("noarch", None) == {
        "info": b'{"subdir":"noarch"}',
        "repodata_version": b"1",
        "removed": b"[]",
    }


def test_indexed_timestamp_is_appended_unless_the_record_already_carries_one() -> None:
    assert json.loads(with_indexed_timestamp(b'{"a":1}', 5)) == {"a": 1, "indexed_timestamp": 5}
    assert json.loads(with_indexed_timestamp(b"{}", 7)) == {"indexed_timestamp": 7}
    upstream = b'{"a":1,"indexed_timestamp":3}'
    assert with_indexed_timestamp(upstream, 99) == upstream
    assert with_indexed_timestamp(b'{"a":1}', None) == b'{"a":1}'


# -- splicing ---------------------------------------------------------------------------------


def test_splice_replaces_adds_and_deletes_records_exactly_as_a_full_render_would() -> None:
    old = {
        "a-1-0.tar.bz2": record("a", "1"),
        "b-1-0.tar.bz2": record("b", "1"),
        "c-1-0.tar.bz2": record("c", "1"),
        "a-1-0.conda": record("a", "1"),
    }
    changes: dict[str, bytes | None] = {
        "b-1-0.tar.bz2": record("b", "1", note="patched"),
        "c-1-0.tar.bz2": None,
        "0first-1-0.tar.bz2": record("0first", "1"),
        "zz-9-0.conda": record("zz", "9"),
        "a-1-0.conda": None,
    }
    new = {fn: raw for fn, raw in {**old, **changes}.items() if raw is not None}
    assert joined(splice_records(render(old), changes)) == render(new)


def _random_filename(rng: random.Random) -> str:
    name = rng.choice(["a", "ab", "abc", "b", "lib-x", "lib_x", "py+", "z9", "Z"])
    version = rng.choice(["1", "1.0", "1.10", "1.2", "2!1.0", "0.1.post1"])
    build = rng.choice(["0", "1", "h1_0", "py_0", "0_x.y"])
    ext = rng.choice([".conda", ".tar.bz2"])
    return f"{name}-{version}-{build}{ext}"


def _random_record(rng: random.Random, filename: str) -> bytes:
    text = "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 12)))
    value: dict[str, object] = {
        "name": filename.split("-")[0],
        "note": text,
        "tricky": rng.choice(['"packages":{', "\n}", "},", "{", "", '"a":"b"']),
        "n": rng.randrange(1000),
    }
    body = json.dumps(value, indent=rng.choice([None, 1]), sort_keys=rng.random() < 0.5)
    return body.encode()


def test_splice_of_random_changes_equals_rendering_the_new_record_set() -> None:
    """Seeded property test: adds, replacements, deletions (present or not), in both groups,
    starting from and ending at empty groups, with and without extra top-level keys."""
    rng = random.Random(SEED)
    spliced_something = 0
    for _ in range(400):
        old = {
            fn: _random_record(rng, fn)
            for fn in {_random_filename(rng) for _ in range(rng.randrange(0, 40))}
        }
        top = rng.choice([None, {"v3": b"{}", "signatures": b'{"x":{"y":1}}'}])
        changes: dict[str, bytes | None] = {}
        for fn in rng.sample(sorted(old), k=rng.randrange(0, len(old) + 1)):
            changes[fn] = None if rng.random() < 0.5 else _random_record(rng, fn)
        for _ in range(rng.randrange(0, 8)):
            fn = _random_filename(rng)
            changes[fn] = None if rng.random() < 0.2 else _random_record(rng, fn)
        new = {fn: raw for fn, raw in {**old, **changes}.items() if raw is not None}
        expected = render(new, top)
        got = joined(splice_records(render(old, top), changes))
        assert got == expected, (sorted(old), changes)
        spliced_something += bool(changes)
    assert spliced_something > 300


def test_splice_with_no_changes_returns_the_same_document() -> None:
    old = render({"a-1-0.conda": record("a", "1"), "a-1-0.tar.bz2": record("a", "1")})
    assert joined(splice_records(old, {})) == old


def test_splice_can_empty_a_group_and_fill_an_empty_one() -> None:
    old = render({"a-1-0.conda": record("a", "1")})
    changes: dict[str, bytes | None] = {"a-1-0.conda": None, "b-1-0.tar.bz2": record("b", "1")}
    assert joined(splice_records(old, changes)) == render({"b-1-0.tar.bz2": record("b", "1")})
    assert b'"packages.conda":{}' in render({"b-1-0.tar.bz2": record("b", "1")})


@pytest.mark.parametrize(
    "document",
    [
        json.dumps(
            {"info": {}, "packages": {"a-1-0.tar.bz2": {}}, "packages.conda": {}}, indent=2
        ).encode(),
        json.dumps({"info": {}, "packages": {"a-1-0.tar.bz2": {}}, "packages.conda": {}}).encode(),
        b'{\n"info":{},\n"packages":{\n"a-1-0.tar.bz2":{}\n}\n}\n',  # no packages.conda
        b'{\n"packages":{},\n"packages":{},\n"packages.conda":{}\n}\n',  # a group twice
        b'{\n"packages":{"a-1-0.tar.bz2":{}},\n"packages.conda":{}\n}\n',  # record on the brace
        b'{\n"packages":{\n"a-1-0.tar.bz2":{},\n"packages.conda":{}',  # truncated: no group end
        b"",
    ],
    ids=["indented", "compact", "missing-group", "duplicate-group", "inline", "truncated", "empty"],
)
def test_documents_not_in_the_rendered_shape_are_refused_with_none(document: bytes) -> None:
    assert splice_records(document, {"b-1-0.tar.bz2": record("b", "1")}) is None
