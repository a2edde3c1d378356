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
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from mirror import __version__
from mirror.adapters.catalog import UpstreamState
from mirror.adapters.upstream import Fetched, NotModified, Upstream
from mirror.config.model import ChannelConfig
from mirror.core.filters import Selection, select
from mirror.core.guards import GuardVerdict, RecentChanges, check_guards
from mirror.core.plan import (
    SyncPlan,
    WantedFile,
    plan_sync,
)
from mirror.core.records import UpstreamRepodata
from mirror.core.repodata_doc import published_records
from mirror.errors import Interrupted, MirrorError, RepodataError, UpstreamError
from mirror.publish.names import REPODATA_JSON
from mirror.publish.settings import PublishSettings, settings_for
from mirror.publish.subdir import publish_subdir
from mirror.reports import FileFailure, Outcome, SubdirReport, UpstreamStatus
from mirror.sync.context import (
    SyncContext,
    SyncOptions,
    open_channel_upstream,
    remembered,
    upstream_key,
)
from mirror.sync.in_place import InPlace
from mirror.sync.repodata_source import RepodataSource
from mirror.sync.transfer import Transfer

if TYPE_CHECKING:
    from mirror.sync.closure import SubdirClosure

log = logging.getLogger(__name__)

ZST_MISSING_RECHECK_S = 24 * 3600.0  # how long to believe an upstream has no repodata.json.zst


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
        self.done: dict[str, Any] = {}  # report fields of the steps completed so far
        self.in_place = InPlace(ctx, self.name, subdir)
        self.accepted = False  # this run was let through a guard with a flag
        self.source: RepodataSource | None = None

    def report(self, outcome: Outcome, **fields: Any) -> SubdirReport:
        """A report of this run so far; `fields` are SubdirReport's (checked by replace)."""
        origin = (self.closure.prefetched if self.closure else None) or self.source
        base = SubdirReport(
            channel=self.name,
            subdir=self.subdir,
            outcome=outcome,
            seconds=time.monotonic() - self.started,
            retries=dict(self.retries),
            repodata_source=origin.kind if origin else None,
            repodata_bytes=origin.transferred_bytes if origin else 0,
        )
        return replace(base, **fields)

    def run(self) -> SubdirReport:
        """The subdir's run; it fails only for reasons of the subdir as a whole (its repodata,
        the disk, the state database), and the report keeps what was done before that."""
        try:
            report = self._run()
        except Interrupted:
            report = self.report(
                Outcome.INTERRUPTED, message="stopped before finishing", **self.done
            )
        except (UpstreamError, RepodataError) as exc:  # the subdir's repodata
            report = (
                self._empty_index(exc)
                if self._absent_upstream(exc)
                else self.report(
                    Outcome.FAILED,
                    upstream_status=UpstreamStatus.ERROR,
                    error_reason=exc.reason
                    if isinstance(exc, UpstreamError)
                    else "invalid_repodata",
                    message=self.ctx.redactor(str(exc)),
                    **self.done,
                )
            )
        except MirrorError as exc:  # the tree, the state database
            report = self.report(Outcome.FAILED, message=self._failed_after(str(exc)), **self.done)
        except Exception as exc:  # a bug must not stop the other subdirs (or the daemon)
            log.exception("%s/%s: internal error", self.name, self.subdir)
            message = self._failed_after(f"internal error: {exc!r}")
            report = self.report(Outcome.FAILED, message=message, **self.done)
        if report.outcome != Outcome.PLANNED:
            self._record_run(report)
        return report

    def _absent_upstream(self, exc: Exception) -> bool:
        """Upstream has no such subdir (404), and what we publish of it lists nothing: a typo,
        or a subdir the upstream does not carry (linux-aarch64 of a small channel). A subdir
        that has records keeps them: upstream losing one is a failure to look at."""
        if self.options.dry_run or not isinstance(exc, UpstreamError):
            return False
        if exc.reason != "not_found":
            return False
        key = f"{self.ctx.tree.subdir_key(self.name, self.subdir)}/{REPODATA_JSON}"
        published = self.ctx.tree.read_if_there(key)
        return published is None or not published_records(published)

    def _empty_index(self, exc: Exception) -> SubdirReport:
        """An empty index, so that clients (and `mirror verify`) find a valid subdir, as for
        noarch; a warning, not a failure: the channel's other subdirs are what it serves."""
        ctx = self.ctx
        publish_subdir(ctx.tree, ctx.catalog, self.name, self.subdir, self._publish_settings())
        message = ctx.redactor(
            f"upstream has no {self.subdir} ({exc}); published an empty index for it: remove "
            f"{self.subdir} from the channel's subdirs if that is a typo"
        )
        log.warning("%s/%s: %s", self.name, self.subdir, message)
        return self.report(Outcome.OK, upstream_status=UpstreamStatus.ABSENT, message=message)

    def _failed_after(self, reason: str) -> str:
        """What failed, after what was already done (shown and stored: redacted)."""
        files = self.done.get("downloaded_files", 0)
        if files:
            size = self.done.get("downloaded_bytes", 0) / 1e6
            reason = f"failed after downloading {files} files ({size:,.1f} MB): {reason}"
        return self.ctx.redactor(reason)

    def _run(self) -> SubdirReport:
        ctx = self.ctx
        if not self.options.dry_run:
            ctx.tree.clean_temp(self.name, self.subdir)
        memory = remembered(ctx, self.channel, self.subdir)
        state, skip_zst = memory.state, memory.skip_zst
        upstream = self._open_upstream()
        prefetched = self.closure.prefetched if self.closure else None
        if prefetched is None:
            self.source = RepodataSource(ctx, self.channel, self.subdir, upstream, memory)
            result = self.source.fetch(memory.previous)
        else:
            result = prefetched.result
        if isinstance(result, NotModified):
            mirrored = self.in_place.mirrored()
            if self.in_place.still_published(state, self.selection_key, mirrored):
                files = len(mirrored)
                return self.report(
                    Outcome.UNCHANGED,
                    upstream_status=UpstreamStatus.NOT_MODIFIED,
                    selected=files,
                    published=files,
                    unchanged_files=files,
                )
            # the filters, the clock or the tree changed: we need the body after all
            if prefetched is not None:  # the closure phase read it from its cache
                result = Fetched(prefetched.repodata, result.validators, zst_missing=skip_zst)
            else:
                assert self.source is not None
                result = self.source.fetch(None)
            assert isinstance(result, Fetched)
        return self._apply(upstream, result.repodata, result)

    def _apply(
        self, upstream: Upstream, repodata: UpstreamRepodata, fetched: Fetched
    ) -> SubdirReport:
        selection, pulled_in = self._select(repodata)
        self._warn_refused(selection)
        wanted = {
            r.filename: WantedFile(r.filename, r.fields.size, r.fields.sha256, r.fields.md5)
            for r in selection.records
        }
        known = self.in_place.mirrored()
        plan = plan_sync(wanted, self.in_place.present())
        if self.closure is not None and self.closure.additive:
            plan = replace(plan, delete=())  # what stays unselected stays published
        common = {
            "selected": len(wanted),
            "pulled_in": pulled_in,
            "refused": selection.refused,
            "untracked": tuple(p.filename for p in plan.untracked),
        }
        guard = self._guard(plan, len(known))
        if self.options.dry_run:
            return self.report(
                Outcome.PLANNED,
                planned_download_files=len(plan.download) + len(plan.verify),
                planned_download_bytes=plan.download_bytes,
                deleted_files=len(plan.delete),
                deleted_bytes=plan.delete_bytes,
                unchanged_files=len(plan.keep),
                would_guard=guard is not None,
                message=guard and f"the {guard.name} guard would stop this sync: {guard.message}",
                **common,
            )
        if guard:
            return self.report(
                Outcome.GUARDED, message=guard.message, unchanged_files=len(plan.keep), **common
            )
        self.done.update(common)
        return self._execute(upstream, repodata, fetched, selection, plan, common)

    def _guard(self, plan: SyncPlan, published: int) -> GuardVerdict | None:
        """Mass deletion and mass replacement, by this run and within the window."""
        limits = self.channel.guards
        since = self.ctx.clock() - limits.window_days * 86_400
        deleted, replaced = self.ctx.catalog.recent_changes(self.name, self.subdir, since)
        guarded = partial(
            check_guards,
            published=published,
            deleting=[p.filename for p in plan.delete],
            replacing=[w.filename for w in plan.replaced],
            recent=RecentChanges(deleted, replaced),
            limits=limits,
        )
        verdict = guarded(
            allow_delete=self.options.allow_mass_delete,
            allow_replace=self.options.allow_mass_replace,
        )
        # a run let through past a limit starts the window again
        self.accepted = verdict is None and guarded() is not None
        return verdict

    def _select(self, repodata: UpstreamRepodata) -> tuple[Selection, int]:
        """The filters' records, grown by the closure; and how many the closure pulled in."""
        now_ms = int(self.ctx.clock() * 1000)
        selection = select(repodata, self.channel.filters, now_ms, subdir=self.subdir)
        if self.closure is None:
            return selection, 0
        by_filters = {r.filename for r in selection.records}
        records = tuple(self.closure.records(repodata, selection.records, self.subdir))
        pulled_in = sum(1 for r in records if r.filename not in by_filters)
        return replace(selection, records=records), pulled_in

    def _execute(
        self,
        upstream: Upstream,
        repodata: UpstreamRepodata,
        fetched: Fetched,
        selection: Selection,
        plan: SyncPlan,
        common: dict[str, Any],
    ) -> SubdirReport:
        """Download, publish, prune, remember: the plan carried out."""
        ctx = self.ctx
        by_filename = {r.filename: r for r in selection.records}
        transfer = Transfer(ctx, self.name, self.subdir, self._publish_settings())
        moved = transfer.run(upstream, plan, by_filename)
        self.done.update(
            downloaded_files=len(moved.downloaded),
            downloaded_bytes=sum(f.size for f in moved.downloaded),
            verified_files=moved.verified,
        )
        failures = moved.failures
        self.in_place.update_records(by_filename, moved.good, repodata)
        with ctx.catalog.transaction():
            ctx.catalog.retire_records(self.name, self.subdir, (p.filename for p in plan.delete))
        published = publish_subdir(
            ctx.tree, ctx.catalog, self.name, self.subdir, self._publish_settings(), now=ctx.clock()
        )
        deleted_bytes = self.in_place.prune(plan, accepted=self.accepted)
        self._remember(fetched, selection, complete=not failures)
        for failure in failures:  # the summary names only the first five
            shown = self.ctx.redactor(failure.message)
            log.warning("%s/%s: not mirrored: %s", self.name, self.subdir, shown)
        return self.report(
            Outcome.FAILED if failures else Outcome.OK,
            published=published.records,
            downloaded_files=len(moved.downloaded),
            downloaded_bytes=sum(f.size for f in moved.downloaded),
            verified_files=moved.verified,
            unchanged_files=len(plan.keep),
            deleted_files=len(plan.delete),
            deleted_bytes=deleted_bytes,
            repodata_changed=bool(published.changed),
            failures=tuple(failures),
            message=_failures_message(failures, self.ctx.redactor),
            **common,
        )

    # -- steps ------------------------------------------------------------------------------

    def _open_upstream(self) -> Upstream:
        def on_retry(reason: str) -> None:
            with self.retries_lock:
                self.retries[reason] += 1

        return open_channel_upstream(self.ctx, self.channel, on_retry)

    def _publish_settings(self) -> PublishSettings:
        return settings_for(self.channel.index, self.subdir, local_channel=False)

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


def _failures_message(failures: list[FileFailure], redact: Callable[[str], str]) -> str | None:
    if not failures:
        return None
    shown = "; ".join(f.message for f in failures[:5]) + (" ..." if len(failures) > 5 else "")
    return redact(f"{len(failures)} files could not be mirrored: {shown}")


__all__ = ["SubdirSync", "SyncContext", "SyncOptions"]
