"""Decoding an upstream shard into what the full path gets from repodata.json: file name ->
(group, canonical record JSON), plus `removed`; refusing what JSON cannot hold."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import msgspec
import pytest

from mirror.core.gate import decode_record
from mirror.core.records import Record, Refusal
from mirror.core.shards import build_shard
from mirror.core.upstream_shard_records import UpstreamShard, combine, decode_shard
from mirror.errors import ShardError, ShardHashMismatch
from tests.unit.shard_bytes import Packed, pack, packed_map, zst

SOURCE = "https://up.example/ch/linux-64/shards/x.msgpack.zst"
MD5 = hashlib.md5(b"pkg").hexdigest()
SHA = hashlib.sha256(b"pkg").hexdigest()


def record(name: str = "numpy", version: str = "2.0", build: str = "0", **extra: Any) -> Any:
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": ["python >=3.11", "__glibc >=2.17"],
        "md5": bytes.fromhex(MD5),
        "sha256": bytes.fromhex(SHA),
        "size": 1234,
        "subdir": "linux-64",
    }
    fields.update(extra)
    return fields


def shard_bytes(document: Any) -> bytes:
    return zst(pack(document))


def decode(data: bytes, name: str = "numpy", **kwargs: Any) -> UpstreamShard:
    return decode_shard(
        data, name=name, sha256_hex=hashlib.sha256(data).hexdigest(), source=SOURCE, **kwargs
    )


def canonical(value: Any) -> bytes:
    return msgspec.json.encode(value, order="sorted")


def only_refusal(shard: UpstreamShard) -> Refusal:
    assert len(shard.refused) == 1, shard.refused
    return shard.refused[0]


# -- what the full path would get -----------------------------------------------------------------


def test_records_come_back_as_canonical_json_with_hex_digests_under_their_group() -> None:
    document = {
        "packages": {"numpy-2.0-0.tar.bz2": record()},
        "packages.conda": {"numpy-2.0-0.conda": record()},
        "removed": ["numpy-1.0-0.conda", "numpy-0.9-0.conda"],
    }
    shard = decode(shard_bytes(document))
    expected = canonical({**record(), "md5": MD5, "sha256": SHA})
    assert dict(shard.entries) == {
        "numpy-2.0-0.tar.bz2": ("packages", expected),
        "numpy-2.0-0.conda": ("packages.conda", expected),
    }
    assert shard.removed == ("numpy-0.9-0.conda", "numpy-1.0-0.conda")
    assert shard.refused == () and shard.unknown_keys == ()


def test_canonical_means_compact_with_every_map_sorted_at_every_depth() -> None:
    run_exports = {"weak": ["b", "a"], "strong": ["z"]}
    shard = decode(
        shard_bytes({"packages.conda": {"numpy-2.0-0.conda": record(run_exports=run_exports)}})
    )
    raw = shard.entries["numpy-2.0-0.conda"][1]
    assert b'"run_exports":{"strong":["z"],"weak":["b","a"]}' in raw
    assert b": " not in raw and b", " not in raw and b"\n" not in raw
    assert raw.index(b'"build"') < raw.index(b'"md5"') < raw.index(b'"version"')


def test_the_decoded_records_pass_the_record_gate_as_repodata_json_records_do() -> None:
    shard = decode(shard_bytes({"packages.conda": {"numpy-2.0-0.conda": record()}}))
    group, raw = shard.entries["numpy-2.0-0.conda"]
    admitted = decode_record("numpy-2.0-0.conda", group, msgspec.Raw(raw))
    assert isinstance(admitted, Record)
    assert (admitted.fields.md5, admitted.fields.sha256) == (MD5, SHA)


def test_a_shard_from_our_own_writer_gives_back_the_bytes_it_was_built_from() -> None:
    raw = canonical({**record(), "md5": MD5, "sha256": SHA, "license": "BSD-3-Clause"})
    built = build_shard("numpy", [("numpy-2.0-0.conda", raw)], ["numpy-1.0-0.conda"])
    shard = decode_shard(built.data, name="numpy", sha256_hex=built.sha256, source=SOURCE)
    assert shard.entries["numpy-2.0-0.conda"] == ("packages.conda", raw)
    assert shard.sha256 == built.sha256


def test_rattlers_binary_legacy_bz2_md5_becomes_hex_too() -> None:
    document = {"packages.conda": {"numpy-2.0-0.conda": record(legacy_bz2_md5=bytes(16))}}
    raw = decode(shard_bytes(document)).entries["numpy-2.0-0.conda"][1]
    assert b'"legacy_bz2_md5":"' + b"0" * 32 + b'"' in raw


def test_digests_already_in_hex_are_left_as_they_are() -> None:
    document = {"packages.conda": {"numpy-2.0-0.conda": record(md5=MD5, sha256=SHA)}}
    raw = decode(shard_bytes(document)).entries["numpy-2.0-0.conda"][1]
    assert raw == canonical(record(md5=MD5, sha256=SHA))


def test_json_values_the_gate_would_refuse_are_passed_on_for_the_gate_to_refuse() -> None:
    document = {
        "packages.conda": {
            "numpy-2.0-0.conda": record(depends="python"),  # a string, not a list
            "numpy-2.1-0.conda": ["not", "a", "record"],
            "numpy-2.2-0.conda": record(version="2.3"),  # disagrees with its file name
            "numpy-2.4-0.conda": record(md5=bytes(3)),  # hex, but not 32 digits
        }
    }
    shard = decode(shard_bytes(document))
    assert shard.refused == ()
    assert shard.entries["numpy-2.1-0.conda"] == ("packages.conda", b'["not","a","record"]')
    for filename, (group, raw) in shard.entries.items():
        assert isinstance(decode_record(filename, group, msgspec.Raw(raw)), Refusal), filename


def test_a_file_name_in_both_groups_keeps_the_later_as_parse_repodata_does() -> None:
    document = {
        "packages": {"numpy-2.0-0.conda": record(size=1)},
        "packages.conda": {"numpy-2.0-0.conda": record(size=2)},
    }
    group, raw = decode(shard_bytes(document)).entries["numpy-2.0-0.conda"]
    assert group == "packages.conda" and b'"size":2' in raw


def test_missing_groups_and_removed_read_as_empty() -> None:
    shard = decode(shard_bytes({"packages": {}}))
    assert (dict(shard.entries), shard.removed) == ({}, ())


def test_keys_repodata_json_has_but_a_shard_cannot_give_back_are_reported() -> None:
    shard = decode(shard_bytes({"packages": {}, "v3": {"whl": {}}, "signatures": {}}))
    assert shard.unknown_keys == ("signatures", "v3")


def test_dependency_names_leave_out_virtual_packages_and_channel_prefixes() -> None:
    depends = ["python >=3.11", "__glibc >=2.17", "conda-forge::libblas 3.*", "NumPy-Base"]
    document = {"packages.conda": {"numpy-2.0-0.conda": record(depends=depends)}}
    assert decode(shard_bytes(document)).dependency_names == {"python", "libblas", "numpy-base"}


def test_combine_merges_the_shards_of_one_subdir() -> None:
    a = decode(
        shard_bytes(
            {"packages.conda": {"a-1-0.conda": record("a", "1")}, "removed": ["a-0-0.conda"]}
        ),
        "a",
    )
    b = decode(shard_bytes({"packages": {"b-1-0.tar.bz2": record("b", "1")}}), "b")
    entries, removed = combine([a, b])
    assert set(entries) == {"a-1-0.conda", "b-1-0.tar.bz2"} and removed == ["a-0-0.conda"]


# -- the shard as a whole -------------------------------------------------------------------------


def test_bytes_that_are_not_the_named_shard_are_a_distinct_error_before_any_decoding() -> None:
    data = b"not even zstd"
    with pytest.raises(ShardHashMismatch) as caught:
        decode_shard(data, name="numpy", sha256_hex="0" * 64, source=SOURCE)
    assert caught.value.reason == "hash_mismatch"
    assert isinstance(caught.value, ShardError), "callers catching ShardError fall back too"
    assert SOURCE in str(caught.value) and hashlib.sha256(data).hexdigest() in str(caught.value)


def test_a_shard_larger_than_the_limit_when_decompressed_is_refused() -> None:
    data = shard_bytes({"packages": {}, "padding": "x" * 5000})
    with pytest.raises(ShardError) as caught:
        decode(data, max_bytes=4096)
    assert caught.value.reason == "too_large"
    assert decode(data, max_bytes=8192).unknown_keys == ("padding",)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "empty"),
        (zst(b"\xc1"), "not valid msgpack"),
        (shard_bytes([1, 2]), "the document is not a map"),
        (shard_bytes(packed_map([("packages", {}), ("packages", {})])), "'packages' twice"),
        (shard_bytes({"packages": None}), "'packages' is not a map"),
        (shard_bytes({"packages.conda": []}), "'packages.conda' is not a map"),
        (shard_bytes({"packages": {5: record()}}), "non-string key 5"),
        (shard_bytes({"packages": {b"numpy-2.0-0.tar.bz2": record()}}), "non-string key"),
        (
            shard_bytes({"packages": packed_map([("numpy-2.0-0.tar.bz2", record())] * 2)}),
            "'numpy-2.0-0.tar.bz2' twice",
        ),
        (shard_bytes({"packages": {}, "removed": "numpy-1-0.conda"}), "'removed'"),
        (shard_bytes({"packages": {}, "removed": [1]}), "'removed'"),
        (shard_bytes({"packages": {}, "removed": None}), "'removed'"),
        (zst(pack({"packages": {}})[:-1]), "not valid msgpack"),
        (zst(pack({"packages": {}}) + pack(1)), "not valid msgpack"),
        (zst(b'{"packages": {}}'), "not valid msgpack"),
    ],
    ids=[
        "empty", "bad-msgpack", "list", "duplicate-top-key", "null-group", "list-group",
        "int-filename", "binary-filename", "filename-twice", "removed-string", "removed-ints",
        "removed-null", "cut-msgpack", "two-values", "json-inside",
    ],
)  # fmt: skip
def test_bytes_that_are_no_shard_are_refused_whole_naming_the_source(
    data: bytes, detail: str
) -> None:
    with pytest.raises(ShardError) as caught:
        decode(data)
    assert detail in str(caught.value) and SOURCE in str(caught.value)
    assert not isinstance(caught.value, ShardHashMismatch)


# -- records JSON cannot hold ---------------------------------------------------------------------


def _ext() -> Any:
    return msgpack.ExtType(42, b"payload")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("bad_record", "reason"),
    [
        (record(size=float("nan")), "field 'size' holds nan"),
        (record(timestamp=float("inf")), "field 'timestamp' holds inf"),
        (record(depends=["a", float("-inf")]), "field 'depends' holds -inf"),
        (record(license=b"MIT"), "field 'license' holds binary data"),
        (record(run_exports={"weak": [b"x"]}), "field 'run_exports' holds binary data"),
        (record(run_exports={1: ["x"]}), "non-string key 1"),
        (record(extra=_ext()), "field 'extra' holds a msgpack ExtType value"),
        (record(timestamp=msgpack.Timestamp(1, 0)), "msgpack Timestamp value"),
        (packed_map([*record().items(), ("size", 1)]), "the key 'size' twice"),
        (record(run_exports=packed_map([("weak", []), ("weak", [])])), "the key 'weak' twice"),
        (record(deep=_nested(70)), "nested more than 64"),
    ],
    ids=[
        "nan", "inf", "nested-inf", "bytes-field", "nested-bytes", "int-key", "ext-type",
        "timestamp", "duplicate-key", "nested-duplicate-key", "too-deep",
    ],
)  # fmt: skip
def test_a_record_json_cannot_hold_is_refused_with_a_reason_and_the_rest_kept(
    bad_record: Any, reason: str
) -> None:
    document = {
        "packages.conda": {
            "numpy-2.0-0.conda": bad_record,
            "numpy-2.1-0.conda": record(version="2.1"),
        }
    }
    shard = decode(shard_bytes(document))
    refusal = only_refusal(shard)
    assert refusal.filename == "numpy-2.0-0.conda"
    assert reason in refusal.message and "repodata.json cannot hold" in refusal.message
    assert list(shard.entries) == ["numpy-2.1-0.conda"]


def test_a_record_filed_under_another_packages_shard_is_refused() -> None:
    document = {
        "packages.conda": {
            "scipy-1.0-0.conda": record("scipy", "1.0"),
            "numpy-2.0-0.conda": record(),
        }
    }
    shard = decode(shard_bytes(document))
    assert "in the shard of 'numpy'" in only_refusal(shard).message
    assert list(shard.entries) == ["numpy-2.0-0.conda"]
    assert shard.dependency_names == {"python"}, "a refused record reaches no names"


def test_a_hostile_file_name_is_escaped_in_a_refusal_and_left_to_the_gate_otherwise() -> None:
    document = {
        "packages.conda": {
            "other\x1b-1-0.conda": record(size=float("nan")),
            "../../etc/passwd": record(),
        }
    }
    shard = decode(shard_bytes(document))
    assert "\x1b" not in only_refusal(shard).filename
    group, raw = shard.entries["../../etc/passwd"]
    assert isinstance(decode_record("../../etc/passwd", group, msgspec.Raw(raw)), Refusal)


def test_packed_helper_really_repeats_keys() -> None:
    # the duplicate-key cases above are only meaningful if the bytes repeat the key
    raw = bytes(packed_map([("a", 1), ("a", 2)]))
    assert isinstance(packed_map([]), Packed) and raw.count(b"\xa1a") == 2
