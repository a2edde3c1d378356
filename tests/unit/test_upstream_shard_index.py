"""Reading an upstream shard index and resolving where its shards live (CEP-16, as conda and
rattler read it)."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import msgpack
import pytest
import zstandard

from mirror.core.shards import build_shard_index
from mirror.core.upstream_shards import (
    MAX_INDEX_BYTES,
    MAX_SHARD_BYTES,
    decompress_bounded,
    directory_url,
    parse_shard_index,
    shard_url,
)
from mirror.errors import RepodataError, ShardError
from tests.unit.shard_bytes import pack, packed_map, zst

SOURCE = "https://up.example/ch/linux-64/repodata_shards.msgpack.zst"
HASH = hashlib.sha256(b"a shard").hexdigest()
GOOD_INFO = {"subdir": "linux-64", "base_url": "", "shards_base_url": "./shards/"}


def index_bytes(document: Any) -> bytes:
    return zst(pack(document))


def good_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": 1,
        "info": dict(GOOD_INFO),
        "shards": {"numpy": bytes.fromhex(HASH)},
    }
    document.update(changes)
    return document


def refused(data: bytes, **limits: int) -> ShardError:
    with pytest.raises(ShardError) as caught:
        parse_shard_index(data, source=SOURCE, **limits)
    assert SOURCE in str(caught.value), "the message names what was read"
    return caught.value


# -- what is read ---------------------------------------------------------------------------------


def test_our_own_index_reads_back_with_hex_names_and_its_info() -> None:
    shards = {"numpy": HASH, "python": hashlib.sha256(b"py").hexdigest()}
    data = build_shard_index("linux-64", shards, "2026-01-02T03:04:05Z")
    index = parse_shard_index(data, source=SOURCE)
    assert dict(index.shards) == shards
    assert (index.subdir, index.base_url, index.shards_base_url, index.created_at) == (
        "linux-64",
        "",
        "./shards/",
        "2026-01-02T03:04:05Z",
    )


def test_an_index_pointing_elsewhere_keeps_both_urls_as_written() -> None:
    data = build_shard_index(
        "noarch", {}, "x", base_url="https://pkgs.example/noarch", shards_base_url="../s/"
    )
    index = parse_shard_index(data, source=SOURCE)
    assert (index.base_url, index.shards_base_url) == ("https://pkgs.example/noarch", "../s/")


def test_the_parsed_index_cannot_be_changed_afterwards() -> None:
    index = parse_shard_index(index_bytes(good_document()), source=SOURCE)
    with pytest.raises(TypeError):
        index.shards["numpy"] = "0" * 64  # type: ignore[index]


def test_a_missing_version_and_created_at_are_accepted_as_rattler_writes_them() -> None:
    document = good_document()
    del document["version"]
    index = parse_shard_index(index_bytes(document), source=SOURCE)
    assert index.created_at is None


def test_a_msgpack_timestamp_as_created_at_reads_as_utc_iso_text() -> None:
    moment = datetime.datetime(2026, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    document = good_document(
        info={**GOOD_INFO, "created_at": msgpack.Timestamp.from_datetime(moment)}
    )
    index = parse_shard_index(index_bytes(document), source=SOURCE)
    assert index.created_at == "2026-05-06T07:08:09Z"


def test_unknown_info_keys_and_top_level_keys_are_ignored() -> None:
    document = good_document(
        info={**GOOD_INFO, "channel_relations": {"base": "../cf"}}, repodata_revisions={}
    )
    assert parse_shard_index(index_bytes(document), source=SOURCE).subdir == "linux-64"


def test_frames_without_content_size_and_several_frames_in_a_row_are_read() -> None:
    payload = pack(good_document())
    for data in (
        zst(payload, content_size=False),
        zst(payload[:10]) + zst(payload[10:], content_size=False),
    ):
        assert dict(parse_shard_index(data, source=SOURCE).shards) == {"numpy": HASH}


# -- what is refused ------------------------------------------------------------------------------


def test_an_index_error_is_a_repodata_error_the_sync_already_handles() -> None:
    assert issubclass(ShardError, RepodataError)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<html>not found</html>", "corrupt"),
        (index_bytes(good_document())[:-6], "corrupt"),
        (index_bytes(good_document()) + b"trailing", "corrupt"),
        (zst(b"\xc1 is never valid msgpack"), "malformed"),
        (zst(pack(good_document()) + b"\x01"), "malformed"),
    ],
    ids=["empty", "not-zstd", "truncated", "trailing-garbage", "not-msgpack", "two-values"],
)
def test_bytes_that_are_no_index_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    assert refused(data).reason == reason


def test_decompression_stops_at_the_limit_even_when_the_header_claims_less() -> None:
    data = index_bytes(good_document(padding="x" * 100_000))
    assert refused(data, max_bytes=50_000).reason == "too_large"
    assert parse_shard_index(data, source=SOURCE, max_bytes=200_000).subdir == "linux-64"


def test_the_default_limits_are_condas() -> None:
    assert (MAX_INDEX_BYTES, MAX_SHARD_BYTES) == (128 * 2**20, 16 * 2**20)


def test_an_index_naming_more_packages_than_allowed_is_refused() -> None:
    shards = {f"pkg{i}": bytes.fromhex(HASH) for i in range(11)}
    assert "more than 10" in str(refused(index_bytes(good_document(shards=shards)), max_names=10))


def _without(key: str) -> dict[str, Any]:
    info = dict(GOOD_INFO)
    del info[key]
    return good_document(info=info)


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        (["not", "a", "map"], "the document is not a map"),
        (packed_map([("version", 1), ("version", 1)]), "'version' twice"),
        (good_document(version=2), "version 2 is not 1"),
        (good_document(version=True), "version True is not 1"),
        (good_document(info=None), "'info' is not a map"),
        (_without("subdir"), "info.subdir"),
        (good_document(info={**GOOD_INFO, "subdir": ""}), "info.subdir"),
        (_without("base_url"), "info.base_url"),
        (_without("shards_base_url"), "info.shards_base_url"),
        (good_document(info={**GOOD_INFO, "shards_base_url": None}), "info.shards_base_url"),
        (good_document(info={**GOOD_INFO, "base_url": "http://a/\nb"}), "info.base_url"),
        (good_document(info={**GOOD_INFO, "created_at": 1700000000}), "created_at"),
        (good_document(shards=None), "'shards' is not a map"),
        (good_document(shards=[]), "'shards' is not a map"),
        (good_document(shards={7: bytes(32)}), "non-string key 7"),
        (
            good_document(shards=packed_map([("a", bytes(32)), ("a", bytes(32))])),
            "the key 'a' twice",
        ),
        (good_document(shards={"": bytes(32)}), "shard of ''"),
        (good_document(shards={"numpy": bytes(31)}), "shard of 'numpy'"),
        (good_document(shards={"numpy": HASH}), "shard of 'numpy'"),
        (good_document(shards={"numpy": list(bytes(32))}), "shard of 'numpy'"),
    ],
    ids=[
        "document-list", "duplicate-top-key", "version-2", "version-bool", "info-null",
        "no-subdir", "empty-subdir", "no-base-url", "no-shards-base-url", "null-shards-base-url",
        "newline-in-url", "created-at-int", "shards-null", "shards-list", "name-not-string",
        "name-twice", "empty-name", "short-digest", "hex-string-digest", "array-digest",
    ],
)  # fmt: skip
def test_a_malformed_index_is_refused_naming_what_is_wrong(document: Any, detail: str) -> None:
    error = refused(index_bytes(document))
    assert error.reason == "malformed"
    assert detail in str(error)
    assert "repodata.json instead" in str(error), "the message says what happens next"


def test_a_hostile_package_name_is_escaped_in_the_message() -> None:
    document = good_document(shards={"evil\x1b[2J\n": b"short"})
    message = str(refused(index_bytes(document)))
    assert "\x1b" not in message and "\n" not in message


def test_bounded_decompression_refuses_a_bomb_without_producing_it() -> None:
    bomb = zst(bytes(200 * 2**20))  # 200 MiB of zeros in a few kilobytes
    assert len(bomb) < 20_000
    with pytest.raises(ShardError) as caught:
        decompress_bounded(bomb, 2**20, source="bomb", what="shard")
    assert caught.value.reason == "too_large"


def test_a_frame_asking_for_a_window_larger_than_the_limit_needs_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
    huge_window = compressor.compress(b"x" * 1000) + compressor.flush()
    assert zstandard.get_frame_parameters(huge_window).window_size == 2**27
    with pytest.raises(ShardError) as caught:
        decompress_bounded(huge_window, 2**20, source="window", what="shard")
    assert caught.value.reason == "corrupt"
    assert decompress_bounded(huge_window, 2**27, source="window", what="shard") == b"x" * 1000


# -- where the shards are -------------------------------------------------------------------------

INDEX_URL = "https://up.example/ch/linux-64/repodata_shards.msgpack.zst"
FILE_INDEX = "file:///srv/up/ch/linux-64/repodata_shards.msgpack.zst"


@pytest.mark.parametrize(
    ("index_url", "shards_base_url", "folder"),
    [
        (INDEX_URL, "./shards/", "https://up.example/ch/linux-64/shards/"),
        (INDEX_URL, "shards/", "https://up.example/ch/linux-64/shards/"),
        (INDEX_URL, "shards", "https://up.example/ch/linux-64/shards/"),
        (INDEX_URL, "", "https://up.example/ch/linux-64/"),
        (INDEX_URL, "./", "https://up.example/ch/linux-64/"),
        (INDEX_URL, "../x/", "https://up.example/ch/x/"),
        (INDEX_URL, "../shards", "https://up.example/ch/shards/"),
        (INDEX_URL, "/cdn/ch/linux-64/", "https://up.example/cdn/ch/linux-64/"),
        (INDEX_URL, "https://cdn.example/s/linux-64/", "https://cdn.example/s/linux-64/"),
        (INDEX_URL, "https://cdn.example/s/linux-64", "https://cdn.example/s/linux-64/"),
        (INDEX_URL, "//cdn.example/s/", "https://cdn.example/s/"),
        (INDEX_URL, "http://plain.example/s/", "http://plain.example/s/"),
        (
            "https://up.example/t/tk-123/ch/linux-64/repodata_shards.msgpack.zst",
            "./shards/",
            "https://up.example/t/tk-123/ch/linux-64/shards/",
        ),
        (FILE_INDEX, "./shards/", "file:///srv/up/ch/linux-64/shards/"),
        (FILE_INDEX, "shards", "file:///srv/up/ch/linux-64/shards/"),
        (FILE_INDEX, "../x/", "file:///srv/up/ch/x/"),
        (FILE_INDEX, "/elsewhere/shards/", "file:///elsewhere/shards/"),
        (FILE_INDEX, "https://cdn.example/s/", "https://cdn.example/s/"),
    ],
)
def test_shard_urls_resolve_against_the_index_url_as_conda_and_rattler_do(
    index_url: str, shards_base_url: str, folder: str
) -> None:
    assert shard_url(index_url, shards_base_url, HASH) == f"{folder}{HASH}.msgpack.zst"


def test_condas_own_examples_resolve_the_same() -> None:
    index = "https://prefix.dev/conda-forge/osx-arm64/repodata_shards.msgpack.zst"
    assert directory_url(index, "../shards") == "https://prefix.dev/conda-forge/shards/"
    assert directory_url(index, "") == "https://prefix.dev/conda-forge/osx-arm64/"
    # base_url without its trailing slash still names the folder (rattler; conda for https)
    assert (
        directory_url(index, "https://prefix.dev/conda-forge/osx-arm64")
        == "https://prefix.dev/conda-forge/osx-arm64/"
    )


@pytest.mark.parametrize(
    ("index_url", "shards_base_url"),
    [
        (INDEX_URL, "file:///etc/"),
        (INDEX_URL, "ftp://up.example/shards/"),
        (INDEX_URL, "s3://bucket/shards/"),
        (FILE_INDEX, "data:text/plain,x/"),
        ("ftp://up.example/ch/linux-64/repodata_shards.msgpack.zst", "./shards/"),
    ],
)
def test_an_index_cannot_send_us_to_local_files_or_other_schemes(
    index_url: str, shards_base_url: str
) -> None:
    with pytest.raises(ShardError):
        shard_url(index_url, shards_base_url, HASH)


def test_a_refused_location_is_reported_without_the_token_or_password() -> None:
    index = "https://user:pw-secret@up.example/t/tok-secret/ch/linux-64/repodata_shards.msgpack.zst"
    with pytest.raises(ShardError) as caught:
        shard_url(index, "file:///t/tok-secret/", HASH)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("name", [HASH.upper(), HASH[:-1], "../" * 21 + "x", HASH + "/"])
def test_only_a_lowercase_hex_sha256_names_a_shard(name: str) -> None:
    with pytest.raises(ShardError):
        shard_url(INDEX_URL, "./shards/", name)


def test_a_base_url_urllib_cannot_parse_falls_back_instead_of_crashing() -> None:
    index = "https://prefix.dev/conda-forge/osx-arm64/repodata_shards.msgpack.zst"
    with pytest.raises(ShardError) as caught:
        directory_url(index, "http://u:hunter2pass@[::1:bad/shards/")
    assert caught.value.reason == "malformed"
    assert "hunter2pass" not in str(caught.value)
