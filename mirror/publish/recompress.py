"""The zstd levels of repodata: fast when a change is published, raised once the subdir is quiet
(repodata.json.zst and current_repodata.json.zst)."""

from __future__ import annotations

from mirror.adapters.catalog import Catalog, OutputStat
from mirror.adapters.store import ChannelTree
from mirror.publish.names import (
    CURRENT_REPODATA,
    CURRENT_REPODATA_ZST,
    REPODATA_JSON,
    REPODATA_ZST,
)

# each .zst with the .json whose bytes it holds
COMPRESSED_COPIES = ((REPODATA_ZST, REPODATA_JSON), (CURRENT_REPODATA_ZST, CURRENT_REPODATA))


def zst_level_for(size_bytes: int) -> int:
    """The level a change is published at: fast, so it is visible at once. Level 19 costs
    ~0.5 s per MB of JSON on this class of machine, level 3 ~3 ms for a file ~20% larger;
    the background recompression (or --final-zst) raises it once the subdir is quiet."""
    return 19 if size_bytes <= 128 << 10 else 3


def final_zst_level(size_bytes: int) -> int:
    """The level a quiet subdir's .zst is recompressed to: rattler's 19, except where that
    would take minutes (conda-forge-sized files), then conda-index's 16."""
    return 19 if size_bytes <= 64 << 20 else 16


def recompress(tree: ChannelTree, catalog: Catalog, channel: str, subdir: str) -> bool:
    """Rewrite the subdir's .zst files at the final level where one was published at a fast one.

    Only while the .json is exactly what was published (else a newer publish is due and
    will start over); the new .zst holds the same bytes, so readers see no change but size."""
    recorded = catalog.outputs(channel, subdir)
    folder = tree.subdir_key(channel, subdir)
    raised = False
    for zst_name, json_name in COMPRESSED_COPIES:
        zst, json_stat = recorded.get(zst_name), recorded.get(json_name)
        if zst is None or json_stat is None:
            continue
        target = final_zst_level(json_stat.size)
        if (zst.zst_level or 0) >= target:
            continue
        before = tree.stat(f"{folder}/{json_name}")
        if before is None or (before.size, before.mtime_ns) != (json_stat.size, json_stat.mtime_ns):
            continue
        body = tree.read(f"{folder}/{json_name}")
        stat = tree.write_pieces(f"{folder}/{zst_name}", [body], zst_level=target)
        with catalog.transaction():
            new = OutputStat(stat.size, stat.mtime_ns, zst.render_key, target)
            catalog.put_outputs(channel, subdir, {zst_name: new})
        raised = True
    return raised
