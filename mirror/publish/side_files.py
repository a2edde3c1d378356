"""Optional index files: run_exports.json, current_repodata.json (+ .zst); removing switched-off
ones."""

from __future__ import annotations

from mirror.adapters.catalog import OutputStat
from mirror.core.repodata_doc import (
    PublishedRecord,
    render_repodata,
)
from mirror.core.shards import (
    SHARD_INDEX_NAME,
)
from mirror.core.side_indexes import current_selection, run_exports_json, summarize
from mirror.publish.names import (
    CURRENT_REPODATA,
    CURRENT_REPODATA_ZST,
    REPODATA_BZ2,
    REPODATA_ZST,
    RUN_EXPORTS_JSON,
)
from mirror.publish.recompress import zst_level_for
from mirror.publish.records import final_record
from mirror.publish.step import PublishRun, remember_output


def write_run_exports(run: PublishRun) -> None:
    """Written only when every package's run_exports is known (local packages carry them;
    mirrored records do not); otherwise a stale file would mislead, so it is removed."""
    path = run.key(RUN_EXPORTS_JSON)
    entries = []
    for filename, run_exports, _ in run.catalog.extras(run.channel, run.subdir):
        if filename in run.settings.patches.remove:
            continue
        if run_exports is None:
            run.tree.remove(path)
            return
        entries.append((filename, run_exports))
    if run.tree.write_if_changed(path, run_exports_json(run.subdir, entries)):
        run.changed.append(RUN_EXPORTS_JSON)
    remember_output(run, RUN_EXPORTS_JSON)


def write_current_repodata(run: PublishRun, top: dict[str, bytes]) -> None:
    finals: dict[str, bytes] = {}
    for stored in run.catalog.records(run.channel, run.subdir):
        final = final_record(stored, run.settings.patches)
        if final is not None:
            finals[stored.filename] = final
    summaries = {fn: s for fn, raw in finals.items() if (s := summarize(raw)) is not None}
    chosen = current_selection(summaries)
    body = render_repodata(run.subdir, (PublishedRecord(f, finals[f]) for f in chosen), top)
    json_path = run.key(CURRENT_REPODATA)
    if _zst_stale(run, body):  # before the .json, as repodata.json.zst (DESIGN.md rule 2)
        level = zst_level_for(len(body))
        stat = run.tree.write_pieces(run.key(CURRENT_REPODATA_ZST), [body], zst_level=level)
        run.outputs[CURRENT_REPODATA_ZST] = OutputStat(stat.size, stat.mtime_ns, None, level)
        run.changed.append(CURRENT_REPODATA_ZST)
    if run.tree.write_if_changed(json_path, body):
        run.changed.append(CURRENT_REPODATA)
    remember_output(run, CURRENT_REPODATA)


def _zst_stale(run: PublishRun, body: bytes) -> bool:
    """current_repodata.json.zst must be (re)written: the .json changes, or the .zst is not
    the file last written (missing, or changed by someone: a repair rewrites it)."""
    try:
        if run.tree.read(run.key(CURRENT_REPODATA)) != body:
            return True
    except FileNotFoundError:
        return True
    recorded = run.catalog.outputs(run.channel, run.subdir).get(CURRENT_REPODATA_ZST)
    stat = run.tree.stat(run.key(CURRENT_REPODATA_ZST))
    if recorded is None or stat is None:
        return True
    if (stat.size, stat.mtime_ns) != (recorded.size, recorded.mtime_ns):
        return True
    run.outputs[CURRENT_REPODATA_ZST] = recorded  # kept, with its level
    return False


def remove_disabled_outputs(run: PublishRun) -> None:
    """An output switched off in the config must not linger with stale content."""
    disabled = [
        name
        for name, enabled in (
            (REPODATA_ZST, run.settings.zst),
            (REPODATA_BZ2, run.settings.bz2),
            (SHARD_INDEX_NAME, run.settings.shards),
            (CURRENT_REPODATA_ZST, run.settings.current_repodata),
            (CURRENT_REPODATA, run.settings.current_repodata),
            (RUN_EXPORTS_JSON, run.settings.run_exports),
        )
        if not enabled
    ]
    for name in disabled:
        run.tree.remove(run.key(name))
    run.catalog.drop_outputs(run.channel, run.subdir, disabled)
