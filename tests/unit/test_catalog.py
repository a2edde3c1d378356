"""The catalog (a real SQLite file in a temp dir): what it hands out about a channel."""

from __future__ import annotations

from pathlib import Path

from mirror.adapters.catalog import (
    CHANNEL_ROOT,
    Catalog,
    ClosureNote,
    ClosureNoteKind,
    OutputStat,
)


def test_the_channel_root_is_no_subdir(tmp_path: Path) -> None:
    """channeldata.json is recorded at the channel's root; status, pages and metrics list the
    subdirs, and a subdir named "" would be a phantom row in each."""
    with Catalog.in_state_dir(tmp_path) as catalog, catalog.transaction():
        catalog.put_outputs("local", "noarch", {"repodata.json": OutputStat(10, 1)})
        catalog.put_outputs("local", CHANNEL_ROOT, {"channeldata.json": OutputStat(20, 2)})
        assert catalog.subdirs("local") == ["noarch"]
        assert "channeldata.json" in catalog.outputs("local", CHANNEL_ROOT)


def test_a_version_3_catalog_gains_the_closure_notes_table_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    """Schema versions only add tables: an older catalog is migrated in place, not rebuilt."""
    import sqlite3

    from mirror.adapters.catalog.schema import SCHEMA, SCHEMA_VERSION

    path = tmp_path / "catalog.sqlite"
    version_3 = SCHEMA.split("CREATE TABLE IF NOT EXISTS closure_notes")[0]
    db = sqlite3.connect(path)
    db.executescript(version_3)
    db.execute("INSERT INTO schedule VALUES ('cf', 2e9, 1.0)")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    with Catalog(path) as catalog:
        assert catalog.next_runs() == {"cf": 2e9}
        assert catalog.closure_notes("cf") == [] and catalog.dangling("cf") == {}
        note = ClosureNote(ClosureNoteKind.UNAVAILABLE, "no candidate", "osx-arm64", "linuxtool")
        catalog.set_closure_notes("cf", [note])
        assert catalog.closure_notes("cf") == [note]
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 6
    assert catalog_tables(path) >= {"closure_notes", "dangling", "repodata_source"}


def catalog_tables(path: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_row_sqlite_cannot_hold_is_refused_alone(tmp_path: Path) -> None:
    """An integer past 64 bits fails its row, not the batch: the others are stored and marked
    for publication, the refused one is named with why."""
    from mirror.adapters.catalog import CatalogFile

    def row(name: str, size: int) -> CatalogFile:
        return CatalogFile(f"{name}-1.0-0.conda", size, 1, "0" * 64, None, "mirror",
                           name=name, record=b"{}", indexed_ms=1)  # fmt: skip

    with Catalog.in_state_dir(tmp_path) as catalog, catalog.transaction():
        refused = catalog.put_files("up", "noarch", [row("a", 1), row("b", 2**64), row("c", 3)])
        assert list(refused) == ["b-1.0-0.conda"] and "too large" in refused["b-1.0-0.conda"]
        assert set(catalog.files("up", "noarch")) == {"a-1.0-0.conda", "c-1.0-0.conda"}
        assert catalog.put_files("up", "noarch", [row("d", 4)]) == {}
