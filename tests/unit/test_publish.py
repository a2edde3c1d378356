"""Publishing a subdir: CEP-16 shards and their index, the splice fast path, patch instructions,
current_repodata.json, run_exports.json, channeldata.json and the .zst recompression."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from mirror.adapters.catalog import Catalog, CatalogFile
from mirror.adapters.store import ChannelTree, Quarantine, local_tree
from mirror.config.model import IndexSettings
from mirror.core.patches import REVOKED_DEPENDENCY, parse_patch_instructions
from mirror.core.plan import ORIGIN_LOCAL
from mirror.local.indexer import IndexContext, index_channel
from mirror.publish.names import (
    CURRENT_REPODATA,
    CURRENT_REPODATA_ZST,
    REPODATA_JSON,
    REPODATA_ZST,
)
from mirror.publish.recompress import recompress
from mirror.publish.settings import PublishSettings
from mirror.publish.subdir import publish_subdir
from mirror.reports import IndexReport
from tests.conftest import SHARED_REAL
from tests.support.builder import PackageSpec, build_package

CHANNEL = "chan"
PATCH_PACKAGE = (
    SHARED_REAL / "packages" / "noarch" / "conda-forge-repodata-patches-20180828-0.tar.bz2"
)


def unzstd(data: bytes) -> bytes:
    """Streaming: works for frames without a content size too (DESIGN.md, known traps)."""
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


@dataclass
class Workspace:
    """A channel tree with one channel, its state dir and an indexer with an injectable clock."""

    base: Path
    now: float = 1_800_000_000.0

    @property
    def channel_dir(self) -> Path:
        return self.base / "tree" / CHANNEL

    @property
    def state(self) -> Path:
        return self.base / "state"

    def subdir(self, subdir: str) -> Path:
        return self.channel_dir / subdir

    def add(self, *specs: PackageSpec) -> None:
        for spec in specs:
            build_package(spec, self.subdir(spec.subdir))

    def index(self, settings: IndexSettings | None = None, *, force: bool = False) -> IndexReport:
        with Catalog(self.state / "catalog.sqlite") as catalog:
            ctx = IndexContext(
                tree=local_tree(self.base / "tree"),
                catalog=catalog,
                quarantine=Quarantine(self.state / "quarantine"),
                settings=settings or IndexSettings(),
                workers=1,
                clock=lambda: self.now,
            )
            return index_channel(ctx, CHANNEL, force=force)

    def repodata(self, subdir: str) -> dict[str, Any]:
        return json.loads((self.subdir(subdir) / REPODATA_JSON).read_bytes())


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def all_records(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**document["packages"], **document["packages.conda"]}


MIXED = (
    PackageSpec("zlib", "1.2.13", build="h0_0", subdir="linux-64"),
    PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64"),
    PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64", fmt=".tar.bz2"),
    PackageSpec(
        "libfoo",
        "1.10",
        build="h1_0",
        subdir="linux-64",
        depends=("zlib >=1.3",),
        constrains=("libbar <2",),
        run_exports={"weak": ["libfoo >=1.10,<2"]},
    ),
    PackageSpec("appdata", "2024.1", fmt=".tar.bz2"),
    PackageSpec("appdata", "2024.2"),
    PackageSpec("pyapp", "2.0", build="pyh_0", depends=("libfoo", "appdata"), noarch="python"),
)


# -- CEP-16 shards ----------------------------------------------------------------------------


def read_shard_index(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    return msgspec.msgpack.decode(unzstd(data)), data


def test_shard_index_and_shards_follow_cep16_and_agree_with_repodata_json(ws: Workspace) -> None:
    ws.add(*MIXED)
    ws.index()
    for subdir in ("linux-64", "noarch"):
        directory = ws.subdir(subdir)
        index, raw_index = read_shard_index(directory / "repodata_shards.msgpack.zst")
        params = zstandard.get_frame_parameters(raw_index)
        assert params.content_size == len(unzstd(raw_index))  # one frame, with its size
        assert set(index) == {"version", "info", "shards"}
        assert index["version"] == 1
        assert set(index["info"]) == {"subdir", "base_url", "shards_base_url", "created_at"}
        assert index["info"]["subdir"] == subdir
        assert index["info"]["base_url"] == ""
        assert index["info"]["shards_base_url"] == "./shards/"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", index["info"]["created_at"])
        assert index["info"]["created_at"] == "2027-01-15T08:00:00Z"  # ws.now, in UTC

        repodata = ws.repodata(subdir)
        expected_names = {r["name"] for r in all_records(repodata).values()}
        assert set(index["shards"]) == expected_names
        union: dict[str, dict[str, Any]] = {}
        for name, digest in index["shards"].items():
            assert isinstance(digest, bytes) and len(digest) == 32
            shard_path = directory / "shards" / f"{digest.hex()}.msgpack.zst"
            data = shard_path.read_bytes()
            assert hashlib.sha256(data).digest() == digest  # named by its compressed bytes
            assert zstandard.get_frame_parameters(data).content_size == len(unzstd(data))
            shard = msgspec.msgpack.decode(unzstd(data))
            assert set(shard) == {"packages", "packages.conda", "removed"}
            assert shard["removed"] == []
            for group in ("packages", "packages.conda"):
                for filename, record in shard[group].items():
                    assert record["name"] == name
                    assert isinstance(record["md5"], bytes) and len(record["md5"]) == 16
                    assert isinstance(record["sha256"], bytes) and len(record["sha256"]) == 32
                    as_hex = {
                        **record,
                        "md5": record["md5"].hex(),
                        "sha256": record["sha256"].hex(),
                    }
                    assert as_hex == repodata[group][filename]
                    union[filename] = as_hex
        assert union == all_records(repodata)
        on_disk = {p.name for p in (directory / "shards").iterdir()}
        assert on_disk == {f"{d.hex()}.msgpack.zst" for d in index["shards"].values()}


def test_shards_are_deterministic_bytes_across_independent_indexers(tmp_path: Path) -> None:
    def shard_names(workspace: Workspace) -> list[str]:
        workspace.add(*MIXED)
        workspace.index()
        return sorted(p.name for p in workspace.subdir("linux-64").glob("shards/*"))

    one = shard_names(Workspace(tmp_path / "one"))
    assert len(one) == 2  # zlib, libfoo
    assert shard_names(Workspace(tmp_path / "two")) == one
    # records carry indexed_timestamp (CEP-47), so another clock gives other shards
    assert set(shard_names(Workspace(tmp_path / "three", now=1_900_000_000.0))).isdisjoint(one)


def test_files_removed_by_patches_are_listed_in_their_names_shard(ws: Workspace) -> None:
    ws.add(PackageSpec("a", "1"), PackageSpec("a", "2"), PackageSpec("b", "1"))
    patch = ws.base / "patch_instructions.json"
    patch.write_text(json.dumps({"patch_instructions_version": 1, "remove": ["a-1-0.conda"]}))
    ws.index(IndexSettings(patch_instructions=patch))
    assert ws.repodata("noarch")["removed"] == ["a-1-0.conda"]
    index, _ = read_shard_index(ws.subdir("noarch") / "repodata_shards.msgpack.zst")
    removed = {}
    for name, digest in index["shards"].items():
        shard_file = ws.subdir("noarch") / "shards" / f"{digest.hex()}.msgpack.zst"
        removed[name] = msgspec.msgpack.decode(unzstd(shard_file.read_bytes()))["removed"]
    assert removed == {"a": ["a-1-0.conda"], "b": []}


# -- the splice fast path ---------------------------------------------------------------------


def generated_rows(
    count: int, start: int = 0, flavour: str = "", names: int = 300
) -> Iterator[CatalogFile]:
    for i in range(start, start + count):
        name = f"pkg{i % names:03d}"
        version = f"{i // 300}.{i % 7}"
        ext = ".conda" if i % 3 else ".tar.bz2"
        filename = f"{name}-{version}-h{i:05d}_0{ext}"
        sha256 = hashlib.sha256(f"{filename}{flavour}".encode()).hexdigest()
        md5 = hashlib.md5(f"{filename}{flavour}".encode()).hexdigest()
        record = {
            "name": name,
            "version": version,
            "build": f"h{i:05d}_0",
            "build_number": 0,
            "depends": [f"pkg{(i + 1) % 300:03d}", "zlib >=1.2"],
            "license": "MIT",
            "subdir": "linux-64",
            "timestamp": 1_700_000_000_000 + i,
            "md5": md5,
            "sha256": sha256,
            "size": 1000 + i,
            "note": flavour,
        }
        yield CatalogFile(
            filename,
            1000 + i,
            1,
            sha256,
            md5,
            ORIGIN_LOCAL,
            name=name,
            record=msgspec.json.encode(record, order="sorted"),
            indexed_ms=1_700_000_000_000 + i,
            run_exports=b"{}",
            about=b"{}",
        )


def test_a_small_change_to_a_large_subdir_is_spliced_into_bytes_a_full_render_gives(
    tmp_path: Path,
) -> None:
    tree = local_tree(tmp_path / "tree")
    patches = parse_patch_instructions(
        json.dumps(
            {
                "packages": {
                    "pkg003-0.3-h00003_0.tar.bz2": {"license": "BSD-3-Clause"},
                    "pkg010-0.3-h00010_0.conda": {"depends": ["patched"]},
                },
                "revoke": ["pkg020-0.6-h00020_0.conda"],
            }
        ).encode(),
        "test",
    )
    settings = PublishSettings(patches=patches)
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        rows = list(generated_rows(3000))
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", rows)
        first = publish_subdir(tree, catalog, CHANNEL, "linux-64", settings, now=1.8e9)
        assert first.records == 3000 and not first.spliced
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", generated_rows(3, start=3000))  # added
            replaced = [rows[10], rows[1500]]
            catalog.put_files(
                CHANNEL,
                "linux-64",
                [
                    r
                    for r in generated_rows(3000, flavour="v2")
                    if r.filename in {x.filename for x in replaced}
                ],
            )
            catalog.remove_files(CHANNEL, "linux-64", [rows[0].filename, rows[2999].filename])
        directory = tmp_path / "tree" / CHANNEL / "linux-64"
        spliced = publish_subdir(tree, catalog, CHANNEL, "linux-64", settings, now=1.8e9 + 60)
        assert spliced.spliced and spliced.records == 3001
        spliced_json = (directory / REPODATA_JSON).read_bytes()
        spliced_zst = unzstd((directory / REPODATA_ZST).read_bytes())
        spliced_index, _ = read_shard_index(directory / "repodata_shards.msgpack.zst")

        full = publish_subdir(
            tree, catalog, CHANNEL, "linux-64", settings, now=1.8e9 + 60, force=True
        )
        assert not full.spliced
        assert (directory / REPODATA_JSON).read_bytes() == spliced_json
        assert spliced_zst == spliced_json
        full_index, _ = read_shard_index(directory / "repodata_shards.msgpack.zst")
        assert full_index["shards"] == spliced_index["shards"]

    document = json.loads(spliced_json)
    records = all_records(document)
    assert len(records) == 3001
    assert rows[0].filename not in records and rows[2999].filename not in records
    assert records[rows[10].filename]["note"] == "v2"
    assert records["pkg010-0.3-h00010_0.conda"]["depends"] == ["patched"]
    assert records["pkg003-0.3-h00003_0.tar.bz2"]["license"] == "BSD-3-Clause"
    assert records["pkg020-0.6-h00020_0.conda"]["revoked"] is True


def test_a_document_edited_by_hand_is_rendered_again_not_spliced(tmp_path: Path) -> None:
    tree = local_tree(tmp_path / "tree")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", generated_rows(50))
        publish_subdir(tree, catalog, CHANNEL, "linux-64", PublishSettings(), now=1.8e9)
        path = tmp_path / "tree" / CHANNEL / "linux-64" / REPODATA_JSON
        path.write_text(json.dumps(json.loads(path.read_bytes()), indent=2))
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", generated_rows(1, start=50))
        result = publish_subdir(tree, catalog, CHANNEL, "linux-64", PublishSettings(), now=1.8e9)
        assert not result.spliced
        assert len(all_records(json.loads(path.read_bytes()))) == 51
        assert b'\n"packages":{\n' in path.read_bytes()


def test_recompress_raises_a_fast_zst_to_the_final_level_with_the_same_content(
    tmp_path: Path,
) -> None:
    tree = local_tree(tmp_path / "tree")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        with catalog.transaction():
            # a name each: every record is its name's newest, so current_repodata.json is large
            catalog.put_files(CHANNEL, "linux-64", generated_rows(600, names=600))
        settings = PublishSettings(shards=False, current_repodata=True)
        publish_subdir(tree, catalog, CHANNEL, "linux-64", settings, now=1.8e9)
        directory = tmp_path / "tree" / CHANNEL / "linux-64"
        pairs = ((REPODATA_ZST, REPODATA_JSON), (CURRENT_REPODATA_ZST, CURRENT_REPODATA))
        bodies = {zst: (directory / json_name).read_bytes() for zst, json_name in pairs}
        # large enough that the first .zst files were written at a fast level
        assert all(len(body) > 128 << 10 for body in bodies.values())
        fast = {zst: (directory / zst).read_bytes() for zst in bodies}
        json_mtime = (directory / REPODATA_JSON).stat().st_mtime_ns
        assert recompress(tree, catalog, CHANNEL, "linux-64")
        for zst, body in bodies.items():
            final = (directory / zst).read_bytes()
            assert len(final) < len(fast[zst]), zst
            assert zstandard.get_frame_parameters(final).content_size == len(body)
            assert unzstd(final) == body
        assert (directory / REPODATA_JSON).stat().st_mtime_ns == json_mtime
        assert not recompress(tree, catalog, CHANNEL, "linux-64")  # already final


# -- patch instructions -----------------------------------------------------------------------


def test_patch_instructions_fix_remove_revoke_and_delete_keys_like_conda_index(
    ws: Workspace,
) -> None:
    ws.add(
        PackageSpec("a", "1.0", fmt=".tar.bz2", depends=("old",), extra_index={"features": "x"}),
        PackageSpec("a", "1.0", depends=("old",), extra_index={"features": "x"}),
        PackageSpec("b", "1.0", depends=("c",)),
        PackageSpec("c", "1.0", fmt=".tar.bz2"),
        PackageSpec("c", "2.0"),
        PackageSpec("untouched", "1.0"),
    )
    patch = ws.base / "patch_instructions.json"
    patch.write_text(
        json.dumps(
            {
                "patch_instructions_version": 1,
                "packages": {"a-1.0-0.tar.bz2": {"depends": ["new >=2"], "features": None}},
                "packages.conda": {"c-2.0-0.conda": {"license": "Apache-2.0"}},
                "remove": ["c-1.0-0.tar.bz2"],
                "revoke": ["b-1.0-0.conda"],
            }
        )
    )
    unpatched = Workspace(ws.base / "plain")
    unpatched.add(PackageSpec("untouched", "1.0"))
    unpatched.index()

    ws.index(IndexSettings(patch_instructions=patch))
    document = ws.repodata("noarch")
    for filename, group in (("a-1.0-0.tar.bz2", "packages"), ("a-1.0-0.conda", "packages.conda")):
        record = document[group][filename]
        assert record["depends"] == ["new >=2"]  # the .tar.bz2 fix also hits the .conda
        assert "features" not in record  # null deletes the key
    assert "c-1.0-0.tar.bz2" not in document["packages"]
    assert document["removed"] == ["c-1.0-0.tar.bz2"]
    assert document["packages.conda"]["c-2.0-0.conda"]["license"] == "Apache-2.0"
    revoked = document["packages.conda"]["b-1.0-0.conda"]
    assert revoked["revoked"] is True
    assert revoked["depends"] == ["c", REVOKED_DEPENDENCY]
    assert (
        document["packages.conda"]["untouched-1.0-0.conda"]
        == (unpatched.repodata("noarch")["packages.conda"]["untouched-1.0-0.conda"])
    )
    assert (ws.subdir("noarch") / "c-1.0-0.tar.bz2").exists()  # hidden, still downloadable

    # changed instructions re-render the subdir even though no package changed
    patch.write_text(json.dumps({"patch_instructions_version": 1, "packages": {}}))
    ws.index(IndexSettings(patch_instructions=patch))
    document = ws.repodata("noarch")
    assert document["removed"] == []
    assert document["packages"]["c-1.0-0.tar.bz2"]["name"] == "c"
    assert document["packages.conda"]["a-1.0-0.conda"]["features"] == "x"
    assert "revoked" not in document["packages.conda"]["b-1.0-0.conda"]


@pytest.mark.skipif(not PATCH_PACKAGE.exists(), reason="real test data not present")
def test_the_real_conda_forge_patch_package_is_applied_per_subdir(ws: Workspace) -> None:
    ws.add(
        PackageSpec(
            "airflow-with-async",
            "1.9.0",
            build="1",
            subdir="linux-64",
            fmt=".tar.bz2",
            depends=("airflow",),
        ),
        PackageSpec(
            "airflow-with-async", "1.9.0", build="1", subdir="linux-64", depends=("airflow",)
        ),
        PackageSpec(
            "alps",
            "2.3.0",
            build="np111py27_blas_openblas_0",
            subdir="linux-64",
            fmt=".tar.bz2",
            extra_index={"features": "blas_openblas"},
        ),
        PackageSpec("airflow-with-gcp_api", "1.9.0", build="1", subdir="linux-64", fmt=".tar.bz2"),
        PackageSpec("sendgrid", "5.3.0", build="py_0", fmt=".tar.bz2"),
        PackageSpec("sendgrid", "5.4.0", build="py_0", fmt=".tar.bz2"),
    )
    ws.index(IndexSettings(patch_instructions=PATCH_PACKAGE))
    linux = ws.repodata("linux-64")
    patched = ["airflow 1.9.0 py27_1", "eventlet >=0.9.7", "gevent >=0.13", "greenlet >=0.4.9"]
    assert linux["packages"]["airflow-with-async-1.9.0-1.tar.bz2"]["depends"] == patched
    assert linux["packages.conda"]["airflow-with-async-1.9.0-1.conda"]["depends"] == patched
    assert "features" not in linux["packages"]["alps-2.3.0-np111py27_blas_openblas_0.tar.bz2"]
    assert "airflow-with-gcp_api-1.9.0-1.tar.bz2" not in linux["packages"]
    assert "airflow-with-gcp_api-1.9.0-1.tar.bz2" in linux["removed"]
    noarch = ws.repodata("noarch")
    assert set(noarch["packages"]) == {"sendgrid-5.4.0-py_0.tar.bz2"}
    assert noarch["removed"] == ["sendgrid-5.3.0-py_0.tar.bz2"]


def test_broken_patch_instructions_are_a_clear_error(ws: Workspace) -> None:
    from mirror.errors import RepodataError

    ws.add(PackageSpec("a", "1"))
    patch = ws.base / "patch_instructions.json"
    patch.write_text('{"patch_instructions_version": 1, "remove": "a-1-0.conda"}')
    with pytest.raises(RepodataError, match="'remove' must be a list of file names"):
        ws.index(IndexSettings(patch_instructions=patch))


# -- current_repodata.json, run_exports.json, channeldata.json --------------------------------


def test_current_repodata_holds_newest_versions_plus_older_records_their_dependencies_need(
    ws: Workspace,
) -> None:
    ws.add(
        PackageSpec("zlib", "1.2", subdir="linux-64"),
        PackageSpec("zlib", "1.3", subdir="linux-64"),
        PackageSpec("zlib", "1.3", subdir="linux-64", fmt=".tar.bz2"),
        PackageSpec("libfoo", "1.9", subdir="linux-64", depends=("zlib 1.2.*",)),
        PackageSpec("libfoo", "1.10", subdir="linux-64", depends=("zlib >=1.3",)),
        PackageSpec("app", "1.0", subdir="linux-64", depends=("libfoo <1.10",)),
        PackageSpec("other", "1.0", subdir="linux-64"),
        PackageSpec("other", "2.0", subdir="linux-64"),
        PackageSpec("loose", "1.0", subdir="linux-64", depends=("other",)),
    )
    ws.index(IndexSettings(current_repodata=True))
    current = json.loads((ws.subdir("linux-64") / "current_repodata.json").read_bytes())
    assert set(all_records(current)) == {
        "zlib-1.3-0.conda",
        "zlib-1.3-0.tar.bz2",  # every build of the newest version
        "libfoo-1.10-0.conda",
        "app-1.0-0.conda",
        "libfoo-1.9-0.conda",  # app needs it and the newest libfoo does not satisfy it
        "zlib-1.2-0.conda",  # ... and that one in turn needs the older zlib
        "other-2.0-0.conda",  # `other` is satisfied by its newest: no older record
        "loose-1.0-0.conda",
    }
    full = all_records(ws.repodata("linux-64"))
    for filename, record in all_records(current).items():
        assert record == full[filename]
    assert current["info"] == {"subdir": "linux-64"}
    assert (ws.subdir("noarch") / "current_repodata.json").exists()


def test_current_repodata_json_zst_holds_the_same_bytes_in_one_checked_frame_written_first(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conda's classic solver asks for current_repodata.json.zst before the .json: without it,
    a 404 for every subdir on every run. Like repodata.json.zst, it is written before the .json
    (a client that sees the new .json finds the .zst agreeing) and goes when switched off."""
    written: list[str] = []
    write_pieces, write_if_changed = ChannelTree.write_pieces, ChannelTree.write_if_changed

    def spy_pieces(tree: ChannelTree, key: str, *args: Any, **kwargs: Any) -> Any:
        written.append("/".join(key.split("/")[-2:]))
        return write_pieces(tree, key, *args, **kwargs)

    def spy_if_changed(tree: ChannelTree, key: str, *args: Any, **kwargs: Any) -> bool:
        changed = write_if_changed(tree, key, *args, **kwargs)
        if changed:
            written.append("/".join(key.split("/")[-2:]))
        return changed

    monkeypatch.setattr(ChannelTree, "write_pieces", spy_pieces)
    monkeypatch.setattr(ChannelTree, "write_if_changed", spy_if_changed)
    ws.add(*MIXED)
    ws.index(IndexSettings(current_repodata=True))
    for subdir in ("linux-64", "noarch"):
        body = (ws.subdir(subdir) / CURRENT_REPODATA).read_bytes()
        compressed = (ws.subdir(subdir) / CURRENT_REPODATA_ZST).read_bytes()
        params = zstandard.get_frame_parameters(compressed)
        assert params.content_size == len(body) and params.has_checksum
        assert zstandard.ZstdDecompressor().decompress(compressed) == body  # needs one frame
        order = [w for w in written if w.startswith(subdir)]
        assert order.index(f"{subdir}/{CURRENT_REPODATA_ZST}") < order.index(
            f"{subdir}/{CURRENT_REPODATA}"
        )

    ws.add(PackageSpec("zlib", "1.4", build="h0_0", subdir="linux-64"))
    ws.index(IndexSettings(current_repodata=True))
    body = (ws.subdir("linux-64") / CURRENT_REPODATA).read_bytes()
    assert b"zlib-1.4-h0_0.conda" in body
    assert unzstd((ws.subdir("linux-64") / CURRENT_REPODATA_ZST).read_bytes()) == body

    ws.index(IndexSettings(current_repodata=False))
    for subdir in ("linux-64", "noarch"):
        assert not (ws.subdir(subdir) / CURRENT_REPODATA).exists()
        assert not (ws.subdir(subdir) / CURRENT_REPODATA_ZST).exists()


def test_run_exports_json_lists_every_package_with_an_empty_object_when_it_has_none(
    ws: Workspace,
) -> None:
    ws.add(*MIXED)
    ws.index()
    document = json.loads((ws.subdir("linux-64") / "run_exports.json").read_bytes())
    assert document == {
        "info": {"subdir": "linux-64", "version": 1},
        "packages": {"zlib-1.3.1-h0_0.tar.bz2": {"run_exports": {}}},
        "packages.conda": {
            "libfoo-1.10-h1_0.conda": {"run_exports": {"weak": ["libfoo >=1.10,<2"]}},
            "zlib-1.2.13-h0_0.conda": {"run_exports": {}},
            "zlib-1.3.1-h0_0.conda": {"run_exports": {}},
        },
    }
    noarch = json.loads((ws.subdir("noarch") / "run_exports.json").read_bytes())
    assert set(noarch["packages"]) | set(noarch["packages.conda"]) == set(
        all_records(ws.repodata("noarch"))
    )


def test_channeldata_has_newest_version_subdirs_and_about_fields_per_name(ws: Workspace) -> None:
    ws.add(
        *MIXED,
        PackageSpec(
            "libfoo",
            "1.9",
            build="h1_0",
            subdir="linux-64",
            timestamp_ms=1_600_000_000_000,
            run_exports={"strong": ["libfoo 1.9.*"]},
        ),
        PackageSpec("libfoo", "1.9", build="h1_0", subdir="osx-64", license="BSD-3-Clause"),
    )
    ws.index()
    document = json.loads((ws.channel_dir / "channeldata.json").read_bytes())
    assert document["channeldata_version"] == 1
    assert document["subdirs"] == ["linux-64", "noarch", "osx-64"]
    assert set(document["packages"]) == {"zlib", "libfoo", "appdata", "pyapp"}
    assert document["packages"]["libfoo"] == {
        "version": "1.10",  # conda version order, not string order
        "subdirs": ["linux-64", "osx-64"],
        "timestamp": 1_700_000_000_000,
        "license": "MIT",
        "home": "https://example.invalid/libfoo",
        "summary": "Test package libfoo",
        "run_exports": {
            "1.10": {"weak": ["libfoo >=1.10,<2"]},
            "1.9": {"strong": ["libfoo 1.9.*"]},
        },
    }
    assert document["packages"]["appdata"]["version"] == "2024.2"
    assert document["packages"]["appdata"]["subdirs"] == ["noarch"]
    assert "run_exports" not in document["packages"]["zlib"]


# -- what is written when ---------------------------------------------------------------------


def mtimes(paths: Iterable[Path]) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


def test_changing_only_the_clock_rewrites_nothing(ws: Workspace) -> None:
    ws.add(*MIXED)
    ws.index(IndexSettings(current_repodata=True))
    files = [p for p in ws.channel_dir.rglob("*") if p.is_file()]
    before = mtimes(files)
    ws.now += 3600
    report = ws.index(IndexSettings(current_repodata=True))
    assert all(s.published is not None and s.published.changed == () for s in report.subdirs)
    assert mtimes(files) == before
    assert not report.channeldata_written


def test_channeldata_follows_the_patched_records(ws: Workspace) -> None:
    ws.add(PackageSpec("c", "1.0"), PackageSpec("c", "2.0"))
    patch = ws.base / "patch_instructions.json"
    patch.write_text(json.dumps({"patch_instructions_version": 1, "remove": ["c-2.0-0.conda"]}))
    ws.index(IndexSettings(patch_instructions=patch))
    assert set(all_records(ws.repodata("noarch"))) == {"c-1.0-0.conda"}
    channeldata = json.loads((ws.channel_dir / "channeldata.json").read_bytes())
    assert channeldata["packages"]["c"]["version"] == "1.0"


def test_a_shard_that_cannot_be_built_keeps_its_old_one_and_the_others_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Per-record isolation reaches the shards: an unexpected failure building one name's
    shard leaves that name's previous shard in the index, and every other name gets its new
    shard and the subdir is published."""
    from mirror.publish import shard_files

    tree = local_tree(tmp_path / "tree")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", generated_rows(20, names=5))
        publish_subdir(tree, catalog, CHANNEL, "linux-64", PublishSettings(), now=1.8e9)
        folder = tmp_path / "tree" / CHANNEL / "linux-64"
        before, _ = read_shard_index(folder / "repodata_shards.msgpack.zst")
        real = shard_files.build_shard

        def fails_for_one(name: str, *args: Any) -> Any:
            if name == "pkg001":
                raise RecursionError("an unforeseen record shape")
            return real(name, *args)

        monkeypatch.setattr(shard_files, "build_shard", fails_for_one)
        with catalog.transaction():
            catalog.put_files(CHANNEL, "linux-64", generated_rows(20, start=20, names=5))
        result = publish_subdir(tree, catalog, CHANNEL, "linux-64", PublishSettings(), now=1.8e9)
        assert result.records == 40
        after, _ = read_shard_index(folder / "repodata_shards.msgpack.zst")
    assert after["shards"]["pkg001"] == before["shards"]["pkg001"]
    changed = {n for n in after["shards"] if after["shards"][n] != before["shards"][n]}
    assert changed == {"pkg000", "pkg002", "pkg003", "pkg004"}
    assert "the shard of pkg001 could not be built" in caplog.text
