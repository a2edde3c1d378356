"""Invariants of reading upstream shards, for every input: our writer's shards read back to the
exact record bytes they were built from, the index round-trips, and no input makes the reader
fail other than with a ShardError."""

from __future__ import annotations

import contextlib
import hashlib
import string
from typing import Any

import msgpack
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.core.records import PACKAGE_GROUPS, is_safe_filename
from mirror.core.shards import build_shard, build_shard_index
from mirror.core.upstream_shard_records import decode_shard
from mirror.core.upstream_shards import parse_shard_index
from mirror.errors import ShardError
from tests.unit.shard_bytes import zst

SETTINGS = settings(derandomize=True, max_examples=150, deadline=None)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_hex = st.binary(min_size=16, max_size=32).map(bytes.hex)
_name = st.text(alphabet=string.ascii_lowercase + string.digits + "_-.", min_size=1, max_size=12)
_versions = st.text(alphabet=string.ascii_letters + string.digits + "._+!", min_size=1, max_size=8)
# md5/sha256 stay out of the free-form keys: our writer turns any hex string into bytes
# (uppercase too), so only lowercase hex digests, as repodata.json has them, read back the same
_free_keys = st.text(max_size=10).filter(lambda k: k not in ("md5", "sha256"))


@st.composite
def records(draw: st.DrawFn, name: str) -> tuple[str, bytes]:
    """One record of `name` whose repodata.json bytes are canonical (sorted keys, compact)."""
    version, build = draw(_versions), draw(_versions)
    fields: dict[str, Any] = draw(st.dictionaries(_free_keys, _json, max_size=6))
    fields.update(name=name, version=version, build=build)
    for key in ("md5", "sha256"):
        if draw(st.booleans()):
            fields[key] = draw(_hex)
    ext = draw(st.sampled_from([".conda", ".tar.bz2"]))
    return f"{name}-{version}-{build}{ext}", msgspec.json.encode(fields, order="sorted")


@st.composite
def shards(draw: st.DrawFn) -> tuple[str, dict[str, bytes], list[str]]:
    name = draw(_name)
    entries = dict(draw(st.lists(records(name), max_size=5)))
    removed = draw(st.lists(_versions.map(lambda v: f"{name}-{v}-0.conda"), max_size=3))
    return name, entries, removed


@SETTINGS
@given(shards())
def test_shards_of_canonical_records_read_back_byte_for_byte(
    shard_input: tuple[str, dict[str, bytes], list[str]],
) -> None:
    name, entries, removed = shard_input
    built = build_shard(name, entries.items(), removed)
    shard = decode_shard(built.data, name=name, sha256_hex=built.sha256, source="prop")
    assert {fn: raw for fn, (_, raw) in shard.entries.items()} == entries
    for filename, (group, _) in shard.entries.items():
        assert group == PACKAGE_GROUPS[filename.endswith(".conda")]
    # a `removed` entry that is no safe package file name is dropped (rattler refuses it)
    assert shard.removed == tuple(sorted({r for r in removed if is_safe_filename(r)}))
    assert shard.refused == () and shard.unknown_keys == ()


_urls = st.sampled_from(["", "./shards/", "shards", "../x/", "/abs/", "https://cdn.example/s/"])


@SETTINGS
@given(
    subdir=_name,
    names=st.dictionaries(st.text(min_size=1, max_size=20), st.binary(min_size=32, max_size=32)),
    created_at=st.text(max_size=30),
    base_url=_urls,
    shards_base_url=_urls,
)
def test_the_shard_index_round_trips_through_our_writer(
    subdir: str, names: dict[str, bytes], created_at: str, base_url: str, shards_base_url: str
) -> None:
    shards_hex = {name: digest.hex() for name, digest in names.items()}
    data = build_shard_index(
        subdir, shards_hex, created_at, base_url=base_url, shards_base_url=shards_base_url
    )
    index = parse_shard_index(data, source="prop")
    assert dict(index.shards) == shards_hex
    assert (index.subdir, index.created_at) == (subdir, created_at)
    assert (index.base_url, index.shards_base_url) == (base_url, shards_base_url)


_anything = st.recursive(
    _scalars
    | st.binary(max_size=8)
    | st.just(float("nan"))
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.one_of(st.text(max_size=6), st.integers(-9, 9), st.binary(max_size=3)),
            inner,
            max_size=4,
        )
    ),
    max_leaves=16,
)
_documents = st.fixed_dictionaries(
    {},
    optional={
        "packages": st.dictionaries(st.text(max_size=12), _anything, max_size=3) | _anything,
        "packages.conda": st.dictionaries(st.text(max_size=12), _anything, max_size=3),
        "removed": st.lists(st.text(max_size=6), max_size=3) | _anything,
        "v3": _anything,
    },
)


def _packed(document: Any) -> bytes:
    return bytes(msgpack.packb(document, use_bin_type=True, strict_types=False))


@SETTINGS
@given(document=_documents | _anything)
def test_any_msgpack_document_decodes_or_raises_a_shard_error(document: Any) -> None:
    data = zst(_packed(document))
    try:
        shard = decode_shard(
            data, name="x", sha256_hex=hashlib.sha256(data).hexdigest(), source="p"
        )
    except ShardError:
        return
    for _, raw in shard.entries.values():
        msgspec.json.decode(raw)  # every record given back is JSON


@SETTINGS
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_never_break_the_readers(data: bytes) -> None:
    for candidate in (data, zst(data)):
        digest = hashlib.sha256(candidate).hexdigest()
        with contextlib.suppress(ShardError):
            decode_shard(candidate, name="x", sha256_hex=digest, source="p")
        with contextlib.suppress(ShardError):
            parse_shard_index(candidate, source="p")
