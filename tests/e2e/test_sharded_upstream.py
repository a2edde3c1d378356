"""A test upstream with shards, served over real HTTP (and read over file://), gives through its
shards exactly the records its repodata.json gives, wherever the index says the shards live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.request import url2pathname

import httpx
import msgspec
import pytest

from mirror.core.records import name_from_filename, parse_repodata
from mirror.core.shards import SHARD_INDEX_NAME
from mirror.core.upstream_shard_records import UpstreamShard, combine, decode_shard
from mirror.core.upstream_shards import parse_shard_index, shard_url
from tests.conftest import SHARED_REAL, world_specs
from tests.support.builder import build_channel
from tests.support.sharded_upstream import canonicalize_repodata, shard_channel
from tests.support.upstream_server import UpstreamServer

REMOVED = ["zlib-1.2.11-h0_0.conda", "libfoo-1.0-h1_0.tar.bz2", "gone-1.0-0.conda"]


def served_channel(tmp_path: Path) -> tuple[Path, Path]:
    """<served>/ch is the channel; <served>/cdn is room for shards kept elsewhere."""
    served = tmp_path / "served"
    build_channel(served / "ch", world_specs(), top_level={"removed": REMOVED})
    return served, served / "ch"


Entries = dict[str, tuple[str, bytes]]


def read_through_shards(fetch: Callable[[str], bytes], index_url: str) -> tuple[Entries, list[str]]:
    """What the shard path reads: the index, then every shard it names."""
    index = parse_shard_index(fetch(index_url), source=index_url)
    shards: list[UpstreamShard] = []
    for name, digest in sorted(index.shards.items()):
        url = shard_url(index_url, index.shards_base_url, digest)
        shards.append(decode_shard(fetch(url), name=name, sha256_hex=digest, source=url))
        assert shards[-1].refused == ()
    return combine(shards)


def read_through_repodata(data: bytes) -> tuple[Entries, list[str]]:
    """What the full path reads: the records as the raw bytes of repodata.json."""
    repodata = parse_repodata(data, source="repodata.json")
    entries = {fn: (group, bytes(raw)) for fn, (group, raw) in repodata.entries.items()}
    return entries, msgspec.json.decode(repodata.top_level["removed"])


@pytest.mark.parametrize(
    ("shards_root", "shards_base_url"),
    [
        (None, "./shards/"),
        ("cdn", "/cdn/{subdir}/"),
        ("cdn", "../../cdn/{subdir}"),
        ("cdn", "{server}/cdn/{subdir}/"),
    ],
    ids=["beside-the-index", "absolute-path", "relative-elsewhere", "absolute-url"],
)
def test_shards_over_http_give_the_records_repodata_json_gives_byte_for_byte(
    tmp_path: Path, shards_root: str | None, shards_base_url: str
) -> None:
    served, channel = served_channel(tmp_path)
    with UpstreamServer(served) as server, httpx.Client() as client:
        written = shard_channel(
            channel,
            shards_root=None if shards_root is None else served / shards_root,
            shards_base_url=shards_base_url.replace("{server}", server.base_url),
        )
        assert set(written) == {"linux-64", "noarch"}

        def get(url: str) -> bytes:
            response = client.get(url)
            response.raise_for_status()
            return response.content

        for subdir in written:
            base = f"{server.url}/ch/{subdir}"
            via_shards = read_through_shards(get, f"{base}/{SHARD_INDEX_NAME}")
            entries, removed = read_through_repodata(get(f"{base}/repodata.json"))
            assert via_shards[0] == entries and entries, subdir
            # removed files travel in the shard of their name; a name without records has none
            names = {name_from_filename(fn) for fn in entries}
            assert via_shards[1] == sorted(fn for fn in removed if name_from_filename(fn) in names)
        shard_requests = [
            r
            for r in server.requests
            if r.match_path.endswith(".msgpack.zst") and SHARD_INDEX_NAME not in r.match_path
        ]
        assert shard_requests and all(r.status == 200 for r in shard_requests)
        if shards_root is not None:
            assert all(r.match_path.startswith("/cdn/") for r in shard_requests)


def test_shards_over_file_urls_resolve_and_read_the_same(tmp_path: Path) -> None:
    _, channel = served_channel(tmp_path)
    shard_channel(
        channel, shards_root=tmp_path / "elsewhere", shards_base_url="../../../elsewhere/{subdir}/"
    )

    def read(url: str) -> bytes:
        assert url.startswith("file://")
        return Path(url2pathname(url.removeprefix("file://"))).read_bytes()

    index_url = (channel / "linux-64" / SHARD_INDEX_NAME).as_uri()
    entries, _ = read_through_repodata((channel / "linux-64" / "repodata.json").read_bytes())
    assert read_through_shards(read, index_url)[0] == entries


def test_the_builders_pretty_printed_records_are_not_canonical_until_rewritten(
    tmp_path: Path,
) -> None:
    _, channel = served_channel(tmp_path)
    subdir = channel / "linux-64"
    pretty, _ = read_through_repodata((subdir / "repodata.json").read_bytes())
    canonical, _ = read_through_repodata(canonicalize_repodata(subdir))
    assert pretty.keys() == canonical.keys()
    for filename, (group, raw) in canonical.items():
        assert raw != pretty[filename][1], "builder.py writes records with indent=2"
        assert msgspec.json.decode(raw) == msgspec.json.decode(pretty[filename][1])
        assert group == pretty[filename][0]
    assert canonicalize_repodata(subdir) == (subdir / "repodata.json").read_bytes(), "idempotent"


def test_resharding_an_unchanged_channel_writes_no_shard_and_the_same_index(tmp_path: Path) -> None:
    _, channel = served_channel(tmp_path)
    first = shard_channel(channel)
    index = (channel / "linux-64" / SHARD_INDEX_NAME).read_bytes()
    again = shard_channel(channel)
    assert first["linux-64"].written > 0 and again["linux-64"].written == 0
    assert again["linux-64"].shards == first["linux-64"].shards
    assert (channel / "linux-64" / SHARD_INDEX_NAME).read_bytes() == index


def test_condas_real_sharded_test_channel_reads_to_the_values_of_its_repodata_json() -> None:
    """conda's own CEP-16 test channel (real zlib and libgcc-ng records, shards_base_url "")."""
    subdir = SHARED_REAL / "conda_format_repo" / "linux-64"
    if not (subdir / SHARD_INDEX_NAME).exists():
        pytest.skip("shared real test data is absent")

    def read(url: str) -> bytes:
        return Path(url2pathname(url.removeprefix("file://"))).read_bytes()

    via_shards, _ = read_through_shards(read, (subdir / SHARD_INDEX_NAME).as_uri())
    entries, _ = read_through_repodata((subdir / "repodata.json").read_bytes())
    assert via_shards.keys() == entries.keys() and len(entries) == 3
    for filename, (group, raw) in via_shards.items():
        # the same values; the bytes differ only because that repodata.json is pretty-printed
        assert group == entries[filename][0]
        assert msgspec.json.decode(raw) == msgspec.json.decode(entries[filename][1])
