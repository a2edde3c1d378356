"""The catalog (a real SQLite file in a temp dir): what it hands out about a channel."""

from __future__ import annotations

from pathlib import Path

from mirror.adapters.catalog import CHANNEL_ROOT, Catalog, OutputStat


def test_the_channel_root_is_no_subdir(tmp_path: Path) -> None:
    """channeldata.json is recorded at the channel's root; status, pages and metrics list the
    subdirs, and a subdir named "" would be a phantom row in each."""
    with Catalog.in_state_dir(tmp_path) as catalog, catalog.transaction():
        catalog.put_outputs("local", "noarch", {"repodata.json": OutputStat(10, 1)})
        catalog.put_outputs("local", CHANNEL_ROOT, {"channeldata.json": OutputStat(20, 2)})
        assert catalog.subdirs("local") == ["noarch"]
        assert "channeldata.json" in catalog.outputs("local", CHANNEL_ROOT)
