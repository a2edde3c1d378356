"""A bucket serves every key with the headers config/nginx.conf gives a local tree."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.core.object_headers import (
    CHANNELDATA_CACHE_CONTROL,
    INDEX_CACHE_CONTROL,
    PACKAGE_CACHE_CONTROL,
    SHARD_CACHE_CONTROL,
    headers_for,
    is_served,
)

NGINX_CONF = Path(__file__).resolve().parents[2] / "config" / "nginx.conf"
SHARD = "a" * 40 + "0123456789abcdef0123456789abcdef"[:24]


@dataclass(frozen=True)
class Location:
    pattern: re.Pattern[str]
    cache_control: str | None
    denied: bool


@dataclass(frozen=True)
class Nginx:
    """Just enough of nginx to answer 'which headers does this URI get' for this config."""

    types: dict[str, str]
    default_type: str
    locations: list[Location]

    def answer(self, key: str) -> tuple[str, str | None] | None:
        """(Content-Type, Cache-Control) for GET /<key>, or None when it is not served."""
        uri = "/" + key
        extension = key.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower() if "." in key else ""
        content_type = self.types.get(extension, self.default_type)
        for location in self.locations:  # regex locations: the first match in order wins
            if location.pattern.search(uri):
                return None if location.denied else (content_type, location.cache_control)
        return content_type, None


def parse_nginx(text: str) -> Nginx:
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    types_block = re.search(r"types\s*\{(.*?)\}", text, re.S)
    assert types_block is not None
    types = {}
    for statement in types_block.group(1).split(";"):
        words = statement.split()
        for extension in words[1:]:
            types[extension] = words[0]
    default_type = re.search(r"default_type\s+(\S+);", text)
    assert default_type is not None
    locations = []
    for match in re.finditer(r'location\s+~\s+("([^"]+)"|(\S+))\s*\{(.*?)\}', text, re.S):
        body = match.group(4)
        header = re.search(r'add_header\s+Cache-Control\s+"([^"]+)"', body)
        locations.append(
            Location(
                re.compile(match.group(2) or match.group(3)),
                header.group(1) if header else None,
                "deny all" in body,
            )
        )
    return Nginx(types, default_type.group(1), locations)


@functools.cache
def parsed_config() -> Nginx:
    return parse_nginx(NGINX_CONF.read_text())


@pytest.fixture
def nginx() -> Nginx:
    return parsed_config()


KEYS_OF_EVERY_KIND = [
    # indexes, short-lived
    "conda-forge/linux-64/repodata.json",
    "conda-forge/linux-64/repodata.json.zst",
    "conda-forge/linux-64/repodata.json.bz2",
    "conda-forge/noarch/current_repodata.json",
    "conda-forge/noarch/current_repodata.json.zst",
    "conda-forge/noarch/run_exports.json",
    "conda-forge/linux-64/repodata_shards.msgpack.zst",
    "conda-forge/channeldata.json",
    # shards, immutable
    f"conda-forge/linux-64/shards/{SHARD}.msgpack.zst",
    # packages, a day
    "conda-forge/linux-64/zlib-1.3.1-h0_0.conda",
    "conda-forge/noarch/appdata-2024.1-0.tar.bz2",
    # no Cache-Control at all
    "conda-forge/index.html",
    "conda-forge/linux-64/shards/not-a-hash.msgpack.zst",
    "conda-forge/linux-64/shards/" + "A" * 64 + ".msgpack.zst",
    "conda-forge/linux-64/README",
    "conda-forge/linux-64/patch_instructions.json",
    # never served
    ".mirror-lease.json",
    "conda-forge/linux-64/.mirror-0123.tmp",
    "conda-forge/.mirror-state/catalog.sqlite",
]


def test_the_parsed_config_knows_every_kind(nginx: Nginx) -> None:
    """Guards the parser: if it missed a location, every comparison below would be vacuous."""
    assert {loc.cache_control for loc in nginx.locations} == {
        None,
        SHARD_CACHE_CONTROL,
        INDEX_CACHE_CONTROL,
        CHANNELDATA_CACHE_CONTROL,
        PACKAGE_CACHE_CONTROL,
    }
    assert nginx.types["zst"] == "application/zstd"


@pytest.mark.parametrize("key", KEYS_OF_EVERY_KIND)
def test_headers_agree_with_nginx_for_every_kind_of_key(nginx: Nginx, key: str) -> None:
    expected = nginx.answer(key)
    assert is_served(key) == (expected is not None)
    if expected is not None:
        headers = headers_for(key)
        assert (headers.content_type, headers.cache_control) == expected


def test_each_kind_gets_the_documented_policy() -> None:
    assert headers_for("c/linux-64/repodata.json").cache_control == INDEX_CACHE_CONTROL
    assert headers_for("c/linux-64/repodata.json").content_type == "application/json"
    assert headers_for(f"c/linux-64/shards/{SHARD}.msgpack.zst") == headers_for(
        f"c/noarch/shards/{SHARD}.msgpack.zst"
    )
    assert headers_for(f"c/noarch/shards/{SHARD}.msgpack.zst").cache_control == (
        "public, max-age=31536000, immutable"
    )
    assert headers_for("c/noarch/x-1-0.tar.bz2").content_type == "application/x-bzip2"
    assert headers_for("c/channeldata.json").cache_control == "public, max-age=300, must-revalidate"


_segment = st.sampled_from(
    ["conda-forge", "linux-64", "noarch", "shards", ".hidden", "x", "a.b", "REPODATA.JSON"]
)
_name = st.sampled_from(
    [
        "repodata.json",
        "repodata.json.zst",
        "repodata.json.bz2",
        "current_repodata.json",
        "current_repodata.json.zst",
        "run_exports.json",
        "repodata_shards.msgpack.zst",
        "channeldata.json",
        f"{SHARD}.msgpack.zst",
        f"{SHARD}.msgpack.ZST",
        "zlib-1.3.1-h0_0.conda",
        "zlib-1.3.1-h0_0.CONDA",
        "x-1-0.tar.bz2",
        "notes.txt",
        "noextension",
        ".mirror-abc.tmp",
        "repodata.json.gz",
    ]
)


@settings(derandomize=True, max_examples=300)
@given(st.lists(_segment, max_size=4), _name)
def test_headers_agree_with_nginx_at_any_depth(segments: list[str], name: str) -> None:
    nginx = parsed_config()
    key = "/".join([*segments, name])
    expected = nginx.answer(key)
    assert is_served(key) == (expected is not None)
    if expected is not None:
        headers = headers_for(key)
        assert (headers.content_type, headers.cache_control) == expected
