"""A catalog row SQLite refuses costs that one file, never its batch (issue 11).

The record gate keeps out the values we know SQLite cannot hold (an integer past 64 bits),
so the refusal here comes from a real SQLite trigger on the real state database: it stands
for whatever the next such value is. A sync, `mirror index` and a drop folder each keep the
good files of the batch, name the refused one, publish no index naming it, and take it in
once the database accepts it again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml

from mirror.adapters.catalog import CATALOG_NAME, Catalog
from mirror.adapters.store import Quarantine, local_tree
from mirror.config import load_config
from mirror.local.drops import DropContext, admit_drops
from mirror.reports import DropResult
from tests.conftest import run_cli, write_config
from tests.support.builder import PackageSpec, build_channel, build_package, package_bytes

REFUSE = (
    "CREATE TRIGGER refuse_bad BEFORE INSERT ON files WHEN NEW.filename LIKE 'bad-%' "
    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
)
GOOD, BAD, OTHER = (PackageSpec("good", "1.0"), PackageSpec("bad", "1.0"),
                    PackageSpec("other", "1.0"))  # fmt: skip


def sql(database: Path, statement: str) -> None:
    with sqlite3.connect(database) as db:
        db.execute(statement)


def published(subdir: Path) -> set[str]:
    document = json.loads((subdir / "repodata.json").read_bytes())
    return set(document["packages.conda"]) | set(document["packages"])


def test_a_sync_keeps_the_files_whose_rows_the_catalog_takes(tmp_path: Path) -> None:
    build_channel(tmp_path / "upstream", [GOOD])
    config = write_config(
        tmp_path, {"up": {"upstream": str(tmp_path / "upstream"), "subdirs": ["noarch"]}}
    )
    assert run_cli(["sync", "--config", str(config)]).code == 0
    sql(tmp_path / "state" / CATALOG_NAME, REFUSE)
    build_channel(tmp_path / "upstream", [GOOD, BAD, OTHER])

    refused = run_cli(["sync", "--config", str(config)])
    subdir = tmp_path / "tree" / "up" / "noarch"
    assert refused.code == 1, refused.stderr
    assert BAD.filename in refused.stderr and "catalog cannot store" in refused.stderr
    assert published(subdir) == {GOOD.filename, OTHER.filename}
    assert not (subdir / BAD.filename).exists()  # no index names it: not left in the tree
    assert run_cli(["verify", "--full", "--config", str(config)]).code == 0

    sql(tmp_path / "state" / CATALOG_NAME, "DROP TRIGGER refuse_bad")
    assert run_cli(["sync", "--config", str(config)]).code == 0
    assert published(subdir) == {GOOD.filename, BAD.filename, OTHER.filename}


def test_mirror_index_quarantines_a_file_whose_row_is_refused(tmp_path: Path) -> None:
    channel, state = tmp_path / "chan", tmp_path / "state"
    build_package(GOOD, channel / "noarch")
    assert run_cli(["index", str(channel), "--state-dir", str(state)]).code == 0
    sql(state / CATALOG_NAME, REFUSE)
    for spec in (BAD, OTHER):
        build_package(spec, channel / "noarch")

    result = run_cli(["index", str(channel), "--state-dir", str(state)])
    assert BAD.filename in result.stdout + result.stderr, result.stderr
    assert published(channel / "noarch") == {GOOD.filename, OTHER.filename}
    assert not (channel / "noarch" / BAD.filename).exists()
    reasons = list((state / "quarantine").rglob(f"{BAD.filename}*.reason"))
    assert reasons and "catalog" in reasons[0].read_text()


def test_a_drop_whose_row_is_refused_is_quarantined_and_the_rest_published(
    tmp_path: Path,
) -> None:
    drops, state = tmp_path / "drops", tmp_path / "state"
    drops.mkdir()
    config = tmp_path / "mirror.yaml"
    config.write_text(yaml.safe_dump({
        "root": "tree", "state_dir": "state",
        "channels": {"local": {"subdirs": ["noarch"], "drop_folders": ["drops"]}},
    }))  # fmt: skip
    channel = load_config(config).channels[0]
    state.mkdir()
    with Catalog(state / CATALOG_NAME):
        pass
    sql(state / CATALOG_NAME, REFUSE)
    paths = []
    for spec in (GOOD, BAD, OTHER):
        paths.append(drops / spec.filename)
        paths[-1].write_bytes(package_bytes(spec))
    seen = []
    with Catalog(state / CATALOG_NAME) as catalog:
        ctx = DropContext(tree=local_tree(tmp_path / "tree"), catalog=catalog,
                          quarantine=Quarantine(state / "quarantine"), fresh_s=0.0,
                          on_outcome=seen.append)  # fmt: skip
        report = admit_drops(ctx, channel, paths)
    results = {o.source.name: o.result for o in report.outcomes}
    assert results == {GOOD.filename: DropResult.PUBLISHED, OTHER.filename: DropResult.PUBLISHED,
                       BAD.filename: DropResult.QUARANTINED}  # fmt: skip
    assert [o.result for o in seen] == [o.result for o in report.outcomes]  # counted once each
    subdir = tmp_path / "tree" / "local" / "noarch"
    assert published(subdir) == {GOOD.filename, OTHER.filename}
    assert not (subdir / BAD.filename).exists()
    assert list((state / "quarantine").rglob(f"{BAD.filename}*.reason"))
