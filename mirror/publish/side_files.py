"""Optional index files: run_exports.json, current_repodata.json; removing switched-off ones."""

from __future__ import annotations

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
    REPODATA_BZ2,
    REPODATA_ZST,
    RUN_EXPORTS_JSON,
)
from mirror.publish.records import final_record
from mirror.publish.step import PublishRun, remember_output


def write_run_exports(run: PublishRun) -> None:
    """Written only when every package's run_exports is known (local packages carry them;
    mirrored records do not); otherwise a stale file would mislead, so it is removed."""
    path = run.directory / RUN_EXPORTS_JSON
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
    if run.tree.write_if_changed(run.directory / CURRENT_REPODATA, body):
        run.changed.append(CURRENT_REPODATA)
    remember_output(run, CURRENT_REPODATA)


def remove_disabled_outputs(run: PublishRun) -> None:
    """An output switched off in the config must not linger with stale content."""
    disabled = [
        name
        for name, enabled in (
            (REPODATA_ZST, run.settings.zst),
            (REPODATA_BZ2, run.settings.bz2),
            (SHARD_INDEX_NAME, run.settings.shards),
            (CURRENT_REPODATA, run.settings.current_repodata),
            (RUN_EXPORTS_JSON, run.settings.run_exports),
        )
        if not enabled
    ]
    for name in disabled:
        run.tree.remove(run.directory / name)
    run.catalog.drop_outputs(run.channel, run.subdir, disabled)
