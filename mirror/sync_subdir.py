"""Mirroring one channel/subdir: fetch, select, plan, guard, transfer, publish, prune.

The tree is consistent at every step: a record is published only once its file is verified
in place, and files are deleted only after the repodata that named them is replaced.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mirror import __version__
from mirror.adapters.catalog import CatalogFile, UpstreamState
from mirror.adapters.upstream import (
    Fetched,
    NotModified,
    Upstream,
)
from mirror.channel_outputs import (
    settings_for,
)
from mirror.config.model import ChannelConfig
from mirror.core.filters import Selection, select
from mirror.core.plan import (
    ORIGIN_MIRROR,
    PresentFile,
    SyncPlan,
    WantedFile,
    deletion_guard,
    plan_sync,
)
from mirror.core.records import Record, UpstreamRepodata
from mirror.core.repodata_doc import indexed_times
from mirror.downloads import FileFailure, PoolJob, run_pool
from mirror.errors import Interrupted, MirrorError, UpstreamError
from mirror.publish import (
    PublishSettings,
    pack_top_level,
    publish_subdir,
    published_intact,
)
from mirror.reports import (
    OUTCOME_FAILED,
    OUTCOME_GUARDED,
    OUTCOME_INTERRUPTED,
    OUTCOME_OK,
    OUTCOME_PLANNED,
    OUTCOME_UNCHANGED,
    SubdirReport,
)
from mirror.sync_context import (
    CATALOG_NAME,
    SyncContext,
    SyncOptions,
    open_channel_upstream,
    remembered,
    upstream_key,
)

if TYPE_CHECKING:
    from mirror.closure_phase import SubdirClosure

log = logging.getLogger(__name__)

ZST_MISSING_RECHECK_S = 24 * 3600.0  # how long to believe an upstream has no repodata.json.zst
CATALOG_FLUSH_S = 2.0  # record installed files at least this often, so a crash loses little


class SubdirSync:
    """One channel/subdir run; a class only to share its many inputs between the steps."""

    def __init__(
        self,
        ctx: SyncContext,
        channel: ChannelConfig,
        subdir: str,
        options: SyncOptions,
        closure: SubdirClosure | None = None,
    ) -> None:
        self.ctx, self.channel, self.subdir, self.options = ctx, channel, subdir, options
        self.closure = closure
        self.name = channel.name
        self.started = time.monotonic()
        self.retries: Counter[str] = Counter()
        self.retries_lock = threading.Lock()
        self.upstream_key = upstream_key(channel)
        self.selection_key = hashlib.sha256(
            repr((__version__, subdir, channel.filters, closure and closure.digest)).encode()
        ).hexdigest()
        if closure and closure.prefetched:
            self.retries.update(closure.prefetched.retries)

    def report(self, outcome: str, **fields: object) -> SubdirReport:
        return SubdirReport(
            channel=self.name,
            subdir=self.subdir,
            outcome=outcome,
            seconds=time.monotonic() - self.started,
            retries=dict(self.retries),
            **fields,  # type: ignore[arg-type]
        )

    def run(self) -> SubdirReport:
        try:
            report = self._run()
        except Interrupted:
            report = self.report(OUTCOME_INTERRUPTED, message="stopped before finishing")
        except MirrorError as exc:
            report = self.report(
                OUTCOME_FAILED,
                upstream_status="error",
                error_reason=exc.reason if isinstance(exc, UpstreamError) else None,
                message=self.ctx.redactor(str(exc)),
            )
        except Exception as exc:  # a bug must not stop the other subdirs (or the daemon)
            log.exception("%s/%s: internal error", self.name, self.subdir)
            # the message is stored and shown: an unexpected error may quote a token URL
            report = self.report(
                OUTCOME_FAILED, message=self.ctx.redactor(f"internal error: {exc!r}")
            )
        if report.outcome != OUTCOME_PLANNED:
            self._record_run(report)
        return report

    def _run(self) -> SubdirReport:
        ctx = self.ctx
        if not self.options.dry_run:
            ctx.tree.ensure_subdir(self.name, self.subdir)
            ctx.tree.clean_temp(self.name, self.subdir)
        memory = remembered(ctx, self.channel, self.subdir)
        state, skip_zst = memory.state, memory.skip_zst
        upstream = self._open_upstream()
        prefetched = self.closure.prefetched if self.closure else None
        if prefetched is None:
            result = upstream.fetch_repodata(self.subdir, memory.previous, skip_zst)
        else:
            result = prefetched.result
        if isinstance(result, NotModified):
            mirrored = self._mirrored_files()
            if self._still_published(state, mirrored):
                files = len(mirrored)
                return self.report(
                    OUTCOME_UNCHANGED,
                    upstream_status="not_modified",
                    selected=files,
                    published=files,
                    unchanged_files=files,
                )
            # the filters, the clock or the tree changed: we need the body after all
            if prefetched is not None:  # the closure phase read it from its cache
                result = Fetched(prefetched.repodata, result.validators, zst_missing=skip_zst)
            else:
                result = upstream.fetch_repodata(self.subdir, None, skip_zst)
            assert isinstance(result, Fetched)
        return self._apply(upstream, result.repodata, result)

    def _apply(
        self, upstream: Upstream, repodata: UpstreamRepodata, fetched: Fetched
    ) -> SubdirReport:
        ctx = self.ctx
        selection = select(repodata, self.channel.filters, int(ctx.clock() * 1000))
        pulled_in = 0
        if self.closure is not None:
            by_filters = {r.filename for r in selection.records}
            records = tuple(self.closure.records(repodata, selection.records))
            pulled_in = sum(1 for r in records if r.filename not in by_filters)
            selection = replace(selection, records=records)
        self._warn_refused(selection)
        wanted = {
            r.filename: WantedFile(r.filename, r.fields.size, r.fields.sha256, r.fields.md5)
            for r in selection.records
        }
        known = self._mirrored_files()
        plan = plan_sync(wanted, self._present(known))
        if self.closure is not None and self.closure.additive:
            plan = replace(plan, delete=())  # what stays unselected stays published
        published_count = len(known)
        common = {
            "selected": len(wanted),
            "pulled_in": pulled_in,
            "refused": selection.refused,
            "untracked": tuple(p.filename for p in plan.untracked),
        }
        guard = (
            None
            if self.options.allow_mass_delete
            else deletion_guard(plan, published_count, self.channel.max_delete_fraction)
        )
        if self.options.dry_run:
            return self.report(
                OUTCOME_PLANNED,
                planned_download_files=len(plan.download) + len(plan.verify),
                planned_download_bytes=plan.download_bytes,
                deleted_files=len(plan.delete),
                deleted_bytes=plan.delete_bytes,
                unchanged_files=len(plan.keep),
                message=guard,
                **common,
            )
        if guard:
            return self.report(OUTCOME_GUARDED, message=guard, **common)
        ctx.tree.check_space(
            plan.download_bytes, ctx.config.free_space_margin_bytes, f"{self.name}/{self.subdir}"
        )
        by_filename = {r.filename: r for r in selection.records}
        good, failures, downloaded, verified = self._transfer(upstream, plan, by_filename)
        failures += [
            FileFailure(
                w.filename,
                "name_conflict",
                f"{w.filename}: a different local package "
                "with this name is published here; it is never overwritten by a mirror",
            )
            for w in plan.conflicts
        ]
        self._update_records(by_filename, good, repodata)
        with ctx.catalog.transaction():
            ctx.catalog.retire_records(self.name, self.subdir, (p.filename for p in plan.delete))
        published = publish_subdir(
            ctx.tree, ctx.catalog, self.name, self.subdir, self._publish_settings()
        )
        deleted_bytes = self._prune(plan)
        self._remember(fetched, selection, complete=not failures)
        outcome = OUTCOME_FAILED if failures else OUTCOME_OK
        for failure in failures:  # the summary below names only the first five
            shown = self.ctx.redactor(failure.message)
            log.warning("%s/%s: not mirrored: %s", self.name, self.subdir, shown)
        message = None
        if failures:
            message = (
                f"{len(failures)} files could not be mirrored: "
                + "; ".join(f.message for f in failures[:5])
                + (" ..." if len(failures) > 5 else "")
            )
        report = self.report(
            outcome,
            published=published.records,
            downloaded_files=len(downloaded),
            downloaded_bytes=sum(f.size for f in downloaded),
            verified_files=verified,
            unchanged_files=len(plan.keep),
            deleted_files=len(plan.delete),
            deleted_bytes=deleted_bytes,
            repodata_changed=bool(published.changed),
            failures=tuple(failures),
            message=message and self.ctx.redactor(message),
            **common,
        )
        return report

    # -- steps ------------------------------------------------------------------------------

    def _open_upstream(self) -> Upstream:
        def on_retry(reason: str) -> None:
            with self.retries_lock:
                self.retries[reason] += 1

        return open_channel_upstream(self.ctx, self.channel, on_retry)

    def _mirrored_files(self) -> dict[str, CatalogFile]:
        files = self.ctx.catalog.files(self.name, self.subdir)
        return {k: v for k, v in files.items() if v.origin == ORIGIN_MIRROR}

    def _still_published(
        self, state: UpstreamState | None, mirrored: dict[str, CatalogFile]
    ) -> bool:
        """Upstream is unchanged; is what we published last time still exactly right?"""
        if state is None or state.selection_key != self.selection_key:
            return False
        if state.selection_valid_until_ms is not None and (
            self.ctx.clock() * 1000 >= state.selection_valid_until_ms
        ):
            return False
        tree = self.ctx.tree
        on_disk = tree.scan_packages(self.name, self.subdir)
        for name, known in mirrored.items():
            stat = on_disk.get(name)
            if stat is None or (stat.size, stat.mtime_ns) != (known.size, known.mtime_ns):
                return False
        return published_intact(tree, self.ctx.catalog, self.name, self.subdir)

    def _present(self, known: dict[str, CatalogFile]) -> dict[str, PresentFile]:
        """Files on disk, with the hashes the catalog vouches for (stats unchanged)."""
        all_known = self.ctx.catalog.files(self.name, self.subdir)
        present = {}
        for name, stat in self.ctx.tree.scan_packages(self.name, self.subdir).items():
            entry = all_known.get(name)
            trusted = entry is not None and (entry.size, entry.mtime_ns) == (
                stat.size,
                stat.mtime_ns,
            )
            present[name] = PresentFile(
                filename=name,
                size=stat.size,
                sha256=entry.sha256 if trusted and entry else None,
                md5=entry.md5 if trusted and entry else None,
                origin=entry.origin if entry else None,
            )
        return present

    def _transfer(
        self, upstream: Upstream, plan: SyncPlan, records: dict[str, Record]
    ) -> tuple[set[str], list[FileFailure], list[CatalogFile], int]:
        """Download and verify; each installed file enters the catalog with its record."""
        ctx = self.ctx
        now_ms = int(ctx.clock() * 1000)
        first_indexed = self._published_times(plan.verify)
        good = {w.filename for w in plan.keep}
        failures: list[FileFailure] = []
        downloaded: list[CatalogFile] = []
        verified = 0
        buffer: list[CatalogFile] = []
        last_flush = time.monotonic()
        total_files = len(plan.download) + len(plan.verify)
        ctx.progress.start(
            f"{self.name}/{self.subdir}",
            total_files,
            plan.download_bytes + sum(w.size or 0 for w in plan.verify),
        )
        job = PoolJob(
            upstream,
            ctx.tree,
            self.name,
            self.subdir,
            self.channel.transfer.workers,
            ctx.stop,
            ctx.progress,
        )
        staged: list[tuple[CatalogFile, Path]] = []
        try:
            for outcome in run_pool(job, list(plan.download), list(plan.verify)):
                if outcome.failure is not None:
                    failures.append(outcome.failure)
                    continue
                assert outcome.installed is not None
                good.add(outcome.filename)
                record = records[outcome.filename]
                installed = replace(
                    outcome.installed,
                    name=record.fields.name,
                    record=bytes(record.raw),
                    indexed_ms=_indexed_ms(first_indexed, outcome.installed, now_ms),
                )
                if outcome.staged is not None:
                    staged.append((installed, outcome.staged))
                    downloaded.append(installed)
                    continue
                buffer.append(installed)
                if outcome.downloaded:
                    downloaded.append(installed)
                else:
                    verified += 1
                if time.monotonic() - last_flush > CATALOG_FLUSH_S:
                    self._flush(buffer)
                    last_flush = time.monotonic()
        finally:
            self._flush(buffer)
            ctx.progress.finish()
        self._swap_in(staged)
        return good, failures, downloaded, verified

    def _published_times(self, found: tuple[WantedFile, ...]) -> dict[str, tuple[str | None, int]]:
        """Files found in place but unknown to the catalog (its database was lost): the
        published repodata.json still says when each first entered the index (CEP-47), and a
        rebuild must not make every package look newly indexed."""
        if not found:
            return {}
        path = self.ctx.tree.subdir_dir(self.name, self.subdir) / "repodata.json"
        try:
            return indexed_times(path.read_bytes())
        except OSError:
            return {}

    def _swap_in(self, staged: list[tuple[CatalogFile, Path]]) -> None:
        """Upstream replaced files under names we publish. Their old records leave the
        published index first, then the new bytes take the names, and the new records are
        published with the rest: at no moment does an index name bytes it does not describe."""
        if not staged:
            return
        ctx = self.ctx
        with ctx.catalog.transaction():
            ctx.catalog.retire_records(self.name, self.subdir, (f.filename for f, _ in staged))
        publish_subdir(ctx.tree, ctx.catalog, self.name, self.subdir, self._publish_settings())
        rows = []
        for row, temp in staged:
            final = ctx.tree.package_path(self.name, self.subdir, row.filename)
            stat = ctx.tree.install(temp, final)
            rows.append(replace(row, size=stat.size, mtime_ns=stat.mtime_ns))
        self._flush(rows)

    def _flush(self, buffer: list[CatalogFile]) -> None:
        if buffer:
            with self.ctx.catalog.transaction():
                self.ctx.catalog.put_files(self.name, self.subdir, buffer)
            buffer.clear()

    def _update_records(
        self, records: dict[str, Record], good: set[str], repodata: UpstreamRepodata
    ) -> None:
        """Kept files whose upstream record changed (patched upstream) get the new record, and
        upstream's top-level keys (removed, unknown ones) are stored for publishing."""
        catalog = self.ctx.catalog
        stored = catalog.record_bytes(self.name, self.subdir)
        changed = [
            (fn, records[fn].fields.name, bytes(records[fn].raw))
            for fn in good
            if stored.get(fn) != bytes(records[fn].raw)
        ]
        top_level = pack_top_level({k: bytes(v) for k, v in repodata.top_level.items()})
        with catalog.transaction():
            if changed:
                catalog.update_records(
                    self.name, self.subdir, changed, int(self.ctx.clock() * 1000)
                )
            if catalog.top_level(self.name, self.subdir) != top_level:
                catalog.set_top_level(self.name, self.subdir, top_level)

    def _publish_settings(self) -> PublishSettings:
        return settings_for(self.channel.index, self.subdir, local_channel=False)

    def _prune(self, plan: SyncPlan) -> int:
        """Delete files no longer selected; their records already left the published index."""
        tree = self.ctx.tree
        for present in plan.delete:
            tree.remove(tree.package_path(self.name, self.subdir, present.filename))
        with self.ctx.catalog.transaction():
            self.ctx.catalog.remove_files(
                self.name, self.subdir, (p.filename for p in plan.delete), mark_dirty=False
            )
        return plan.delete_bytes

    def _remember(self, fetched: Fetched, selection: Selection, *, complete: bool) -> None:
        """Store validators only when everything selected is in place: after a partial run the
        next one must fetch and plan again (a 304 would otherwise hide the missing files)."""
        v = fetched.validators
        zst_missing_until = (
            self.ctx.clock() + ZST_MISSING_RECHECK_S if fetched.zst_missing else None
        )
        state = UpstreamState(
            upstream_key=self.upstream_key,
            variant=v.variant,
            etag=v.etag if complete else None,
            last_modified=v.last_modified if complete else None,
            zst_missing_until=zst_missing_until,
            selection_key=self.selection_key,
            selection_valid_until_ms=selection.valid_until_ms,
        )
        with self.ctx.catalog.transaction():
            self.ctx.catalog.save_upstream_state(self.name, self.subdir, state)

    def _record_run(self, report: SubdirReport) -> None:
        with self.ctx.catalog.transaction():
            self.ctx.catalog.record_run(
                channel=self.name,
                subdir=self.subdir,
                started_at=self.ctx.clock() - report.seconds,
                outcome=report.outcome,
                downloaded_files=report.downloaded_files,
                downloaded_bytes=report.downloaded_bytes,
                deleted_files=report.deleted_files,
                failed_files=len(report.failures),
                message=report.message,
            )

    def _warn_refused(self, selection: Selection) -> None:
        for refusal in selection.refused[:20]:
            log.warning(
                "%s/%s: refused upstream record %s: %s",
                self.name,
                self.subdir,
                refusal.filename,
                refusal.message,
            )
        if len(selection.refused) > 20:
            log.warning(
                "%s/%s: ... and %d more refused records",
                self.name,
                self.subdir,
                len(selection.refused) - 20,
            )


def _indexed_ms(
    published: dict[str, tuple[str | None, int]], installed: CatalogFile, now_ms: int
) -> int:
    """The published time, when the published record describes exactly these bytes."""
    sha256, indexed_ms = published.get(installed.filename, (None, now_ms))
    return indexed_ms if sha256 is not None and sha256 == installed.sha256 else now_ms


__all__ = ["CATALOG_NAME", "SubdirSync", "SyncContext", "SyncOptions"]
