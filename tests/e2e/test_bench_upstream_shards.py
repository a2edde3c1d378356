"""The benchmark's shard writer gives a generated upstream a shard index that names, for every
package, a shard holding exactly that package's records; a change rewrites only its shards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from mirror.core.records import name_from_filename, parse_repodata
from mirror.core.shards import SHARD_INDEX_NAME, SHARDS_DIR
from mirror.core.upstream_shard_records import decode_shard
from mirror.core.upstream_shards import parse_shard_index
from tests.bench.upstream_shards import generate_repodata, shard_generated_subdir, update_shards


def test_every_generated_record_is_in_the_shard_of_its_name_and_only_there(tmp_path: Path) -> None:
    subdir = tmp_path / "linux-64"
    generate_repodata(subdir, names=30, per_name=4)
    result = shard_generated_subdir(subdir, workers=2)
    index = parse_shard_index((subdir / SHARD_INDEX_NAME).read_bytes(), source="index")
    assert dict(index.shards) == result.shards and result.written == 30
    assert result.index_bytes == (subdir / SHARD_INDEX_NAME).stat().st_size

    repodata = parse_repodata((subdir / "repodata.json").read_bytes(), source="repodata")
    seen: dict[str, dict[str, object]] = {}
    for name, digest in index.shards.items():
        data = (subdir / SHARDS_DIR / f"{digest}.msgpack.zst").read_bytes()
        shard = decode_shard(data, name=name, sha256_hex=digest, source=name)
        assert shard.refused == ()
        for filename, (_, raw) in shard.entries.items():
            seen[filename] = msgspec.json.decode(raw)
    # the generated repodata is pretty-printed, so compare values, not bytes
    assert seen == {fn: msgspec.json.decode(raw) for fn, (_, raw) in repodata.entries.items()}

    again = shard_generated_subdir(subdir, workers=2)
    assert again.written == 0 and again.shards == result.shards


def test_an_update_rewrites_the_changed_names_and_the_index_only(tmp_path: Path) -> None:
    subdir = tmp_path / "linux-64"
    generate_repodata(subdir, names=10, per_name=2)
    before = shard_generated_subdir(subdir, workers=1).shards
    changed, dropped = sorted(before)[:2]
    record = {"name": changed, "version": "9.9", "build": "0", "sha256": "0" * 64}
    after = update_shards(
        subdir,
        before,
        {changed: [(f"{changed}-9.9-0.conda", msgspec.json.encode(record))], dropped: []},
    )
    assert after[changed] != before[changed] and dropped not in after
    assert {n: d for n, d in after.items() if n != changed} == {
        n: d for n, d in before.items() if n not in (changed, dropped)
    }
    index = parse_shard_index((subdir / SHARD_INDEX_NAME).read_bytes(), source="index")
    assert dict(index.shards) == after
    data = (subdir / SHARDS_DIR / f"{after[changed]}.msgpack.zst").read_bytes()
    assert hashlib.sha256(data).hexdigest() == after[changed]
    assert all(name_from_filename(fn) == changed for fn in decode_shard(
        data, name=changed, sha256_hex=after[changed], source="x").entries)  # fmt: skip
