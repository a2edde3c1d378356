"""CEP-16 files of a subdir: new shards (never rewritten), the shard index, and the shard GC."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Future, ThreadPoolExecutor

import msgspec

from mirror.core.shards import (
    SHARD_INDEX_NAME,
    SHARDS_DIR,
    Shard,
    build_shard,
    build_shard_index,
    removed_by_name,
)
from mirror.errors import MirrorError
from mirror.publish.names import (
    SHARD_SUFFIX,
)
from mirror.publish.records import final_record
from mirror.publish.step import PublishRun, remember_output

SHARD_WRITERS = 8  # a bucket store bounds its own PUTs in flight (storage.max_uploads)
log = logging.getLogger(__name__)


def write_shards(
    run: PublishRun, names: set[str], top: dict[str, bytes]
) -> tuple[dict[str, str | None], int]:
    """Build the shards of the given package names; write the new ones (never rewrite one)."""
    folder = run.key(SHARDS_DIR)
    removed = removed_by_name(msgspec.json.decode(top.get("removed", b"[]")))
    changes: dict[str, str | None] = {}
    new_files: list[str] = []

    def write(shard: Shard) -> None:
        key = f"{folder}/{shard.filename}"
        if run.tree.write_new(key, shard.data, durable=False):
            new_files.append(key)

    # creating thousands of small files is file-system latency, not CPU: overlap it
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=SHARD_WRITERS) as writers:
        for name in sorted(names):
            try:
                shard = _shard_of(run, name, set(removed.get(name, ())))
            except MirrorError:  # the catalog or the tree: a subdir-level failure
                raise
            except Exception:  # one name's records must not stop the others' shards
                log.exception(
                    "%s/%s: the shard of %s could not be built; it keeps its previous shard "
                    "until the next publish (`mirror verify` reports it stale)",
                    run.channel, run.subdir, name,
                )  # fmt: skip
                continue
            if shard is None:
                changes[name] = None
                continue
            futures.append(writers.submit(write, shard))
            changes[name] = shard.sha256
    for future in futures:
        future.result()  # a failed write (disk full) must stop the index from naming it
    run.tree.make_durable(new_files)  # before the shard index names them
    return changes, len(new_files)


def _shard_of(run: PublishRun, name: str, removed_here: set[str]) -> Shard | None:
    """The shard of one package name (None: no record of it is left)."""
    records = []
    for stored in run.catalog.records_named(run.channel, run.subdir, name):
        final = final_record(stored, run.settings.patches)
        if final is None:
            removed_here.add(stored.filename)  # removed by patch instructions
        else:
            records.append((stored.filename, final))
    return build_shard(name, records, removed_here) if records else None


def updated_shard_map(shard_map: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    updated = dict(shard_map)
    for name, digest in changes.items():
        if digest is None:
            updated.pop(name, None)
        else:
            updated[name] = digest
    return updated


def write_shard_index(run: PublishRun, shard_map: dict[str, str], *, refresh: bool) -> None:
    """Written when a shard changed; `created_at` alone never causes a rewrite."""
    path = run.key(SHARD_INDEX_NAME)
    if not refresh and run.tree.stat(path) is not None:
        return
    created = dt.datetime.fromtimestamp(run.now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run.tree.write_if_changed(path, build_shard_index(run.subdir, shard_map, created))
    run.changed.append(SHARD_INDEX_NAME)
    remember_output(run, SHARD_INDEX_NAME)


def collect_shard_garbage(run: PublishRun, shard_map: dict[str, str]) -> int:
    """Delete shards no index has named for the grace period (CEP-16 suggests a week).

    Clients holding an older shard index may still ask for the shards it names, so a shard
    that drops out of the index becomes an orphan first and is deleted only once it has been
    one for `shard_grace_days`."""
    folder = run.key(SHARDS_DIR)
    referenced = set(shard_map.values())
    on_disk = run.tree.list_names(folder, SHARD_SUFFIX)
    orphans = run.catalog.shard_orphans(run.channel, run.subdir)
    grace_s = run.settings.shard_grace_days * 86400
    new_orphans = {d: run.now for d in on_disk - referenced if d not in orphans}
    expired = {
        d
        for d, since in orphans.items()
        if d in on_disk - referenced and run.now - since >= grace_s
    }
    for digest in expired:
        run.tree.remove(f"{folder}/{digest}{SHARD_SUFFIX}")
    forget = expired | {d for d in orphans if d in referenced or d not in on_disk}
    run.catalog.set_shard_orphans(run.channel, run.subdir, new_orphans, forget)
    return len(expired)
