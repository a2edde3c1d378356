"""Raising a quiet subdir's repodata.json.zst from the fast publishing level to the final one."""

from __future__ import annotations

from mirror.adapters.catalog import Catalog, OutputStat
from mirror.adapters.store import ChannelTree
from mirror.publish.names import (
    REPODATA_JSON,
    REPODATA_ZST,
)


def final_zst_level(size_bytes: int) -> int:
    """The level a quiet subdir's .zst is recompressed to: rattler's 19, except where that
    would take minutes (conda-forge-sized files), then conda-index's 16."""
    return 19 if size_bytes <= 64 << 20 else 16


def recompress(tree: ChannelTree, catalog: Catalog, channel: str, subdir: str) -> bool:
    """Rewrite repodata.json.zst at the final level if it was published at a fast one.

    Only while repodata.json is exactly what was published (else a newer publish is due and
    will start over); the new .zst holds the same bytes, so readers see no change but size."""
    recorded = catalog.outputs(channel, subdir)
    zst, json_stat = recorded.get(REPODATA_ZST), recorded.get(REPODATA_JSON)
    directory = tree.subdir_dir(channel, subdir)
    if zst is None or json_stat is None:
        return False
    target = final_zst_level(json_stat.size)
    if (zst.zst_level or 0) >= target:
        return False
    before = tree.stat(directory / REPODATA_JSON)
    if before is None or (before.size, before.mtime_ns) != (json_stat.size, json_stat.mtime_ns):
        return False
    body = (directory / REPODATA_JSON).read_bytes()
    stat = tree.write_pieces(directory / REPODATA_ZST, [body], zst_level=target)
    with catalog.transaction():
        new = OutputStat(stat.size, stat.mtime_ns, zst.render_key, target)
        catalog.put_outputs(channel, subdir, {REPODATA_ZST: new})
    return True
