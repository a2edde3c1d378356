"""Which way a subdir's upstream records are read, and the shard cache and session behind the
shard path (read from a file:// upstream: a real adapter, no server)."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from mirror.adapters.upstream import FileUpstream, Retrier
from mirror.config.model import ChannelConfig, DependencySettings, TransferSettings
from mirror.core.filters import FilterRules
from mirror.core.records import parse_repodata
from mirror.core.secrets import Redactor
from mirror.core.shards import SHARD_INDEX_NAME, build_shard
from mirror.core.specs import parse_spec
from mirror.core.upstream_shards import parse_shard_index
from mirror.errors import ShardError, ShardHashMismatch
from mirror.sync.repodata_source import own_names, selects_by_name, wants_shards
from mirror.sync.shard_cache import ShardCache
from mirror.sync.shard_session import ShardSession
from tests.conftest import world_specs
from tests.support.builder import build_channel
from tests.support.sharded_upstream import shard_channel


def channel(include: tuple[str, ...] = (), **changes: object) -> ChannelConfig:
    base = ChannelConfig(
        name="c",
        upstream="https://example.invalid/c",
        token_env=None,
        subdirs=("linux-64", "noarch"),
        filters=FilterRules(include=tuple(parse_spec(s) for s in include)),
        transfer=TransferSettings(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "by_name"),
    [
        (channel(("numpy",)), True),
        (channel(), False),  # mirrors everything
        (channel(dependencies=DependencySettings(mode="all")), False),  # every name a root
        (channel(("numpy",), dependencies=DependencySettings(mode="all")), True),
        (channel(dependencies=DependencySettings(mode="solve")), True),
        (channel(lockfiles=(Path("pixi.lock"),)), True),
    ],
)
def test_a_channel_selects_by_name_unless_it_mirrors_everything(
    config: ChannelConfig, by_name: bool
) -> None:
    assert selects_by_name(config) is by_name
    assert wants_shards(config) is by_name  # auto follows the selection
    assert wants_shards(replace(config, repodata_source="shards")) is True
    assert wants_shards(replace(config, repodata_source="full")) is False


@pytest.fixture
def sharded(tmp_path: Path) -> Path:
    root = tmp_path / "upstream"
    build_channel(root, world_specs())
    shard_channel(root)
    return root


def session_for(root: Path, state: Path, subdir: str = "linux-64") -> ShardSession:
    upstream = FileUpstream(root, Retrier(TransferSettings(), threading.Event(), print), 1 << 30)
    url = upstream.file_url(subdir, SHARD_INDEX_NAME)
    got = upstream.fetch_small(url, None, 1 << 20)
    index = parse_shard_index(got.data, source=url)  # type: ignore[union-attr]
    return ShardSession(
        label=f"c/{subdir}",
        subdir=subdir,
        upstream=upstream,
        index=index,
        index_url=url,
        validators=got.validators,
        cache=ShardCache(state, "c", subdir),
        workers=2,
        redact=Redactor(),
    )


def test_include_specs_reach_names_of_the_index_globs_included(
    sharded: Path, tmp_path: Path
) -> None:
    index = session_for(sharded, tmp_path / "state").index
    assert own_names(channel(("lib*", "tool >=0.5", "absent")), index) == {"libfoo", "tool"}
    assert own_names(channel(), index) == set(index.shards)  # only when shards are forced


def test_a_session_gives_the_records_repodata_json_gives_for_the_names_loaded(
    sharded: Path, tmp_path: Path
) -> None:
    session = session_for(sharded, tmp_path / "state")
    session.load(["libfoo", "zlib", "not-in-the-index"])
    expected = parse_repodata((sharded / "linux-64" / "repodata.json").read_bytes(), source="t")
    wanted = {
        f: (g, bytes(r)) for f, (g, r) in expected.entries.items() if not f.startswith("tool")
    }
    got = {f: (g, bytes(r)) for f, (g, r) in session.repodata().entries.items()}
    assert got == wanted
    assert session.fetched_shards == 2 and session.transferred_bytes > 0


def test_cached_shards_are_used_only_while_their_bytes_match_the_index(
    sharded: Path, tmp_path: Path
) -> None:
    first = session_for(sharded, tmp_path / "state")
    first.load(["libfoo", "zlib"])
    digest = first.index.shards["zlib"]
    cache = ShardCache(tmp_path / "state", "c", "linux-64")
    cache.put_shard(digest, build_shard("zlib", []).data)  # damaged: other bytes, same name

    again = session_for(sharded, tmp_path / "state")
    again.load(["libfoo", "zlib"])
    assert again.fetched_shards == 1  # libfoo from the cache; zlib fetched again
    assert (
        cache.shard(digest)
        == (sharded / "linux-64" / "shards" / f"{digest}.msgpack.zst").read_bytes()
    )


def test_a_shard_upstream_serves_with_other_bytes_is_a_hash_mismatch(
    sharded: Path, tmp_path: Path
) -> None:
    session = session_for(sharded, tmp_path / "state")
    digest = session.index.shards["zlib"]
    (sharded / "linux-64" / "shards" / f"{digest}.msgpack.zst").write_bytes(b"other bytes")
    with pytest.raises(ShardHashMismatch, match=r"repodata\.json instead"):
        session.load(["zlib"])


def test_a_missing_shard_is_a_shard_error_that_says_so(sharded: Path, tmp_path: Path) -> None:
    session = session_for(sharded, tmp_path / "state")
    digest = session.index.shards["tool"]
    (sharded / "linux-64" / "shards" / f"{digest}.msgpack.zst").unlink()
    with pytest.raises(ShardError, match=r"not there \(404\); the sync uses repodata.json") as info:
        session.load(["tool"])
    assert info.value.reason == "not_found"


def test_the_cache_keeps_only_the_shards_still_needed(sharded: Path, tmp_path: Path) -> None:
    session = session_for(sharded, tmp_path / "state")
    session.load(["libfoo", "zlib", "tool"])
    cache = session.cache
    (cache.folder / ".stray.tmp").write_bytes(b"x")
    cache.put_index(b"index")
    session.shards.pop("tool")
    assert session.finish() == 2  # tool's shard and the stray temp file
    names = {p.name for p in cache.folder.iterdir()}
    assert names == {"index.msgpack.zst"} | {
        f"{session.index.shards[n]}.msgpack.zst" for n in ("libfoo", "zlib")
    }
