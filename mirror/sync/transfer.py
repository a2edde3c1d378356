"""Downloading and verifying one subdir's planned files, each installed file entering the
catalog with its record; new bytes under a published name are swapped in safely."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mirror.adapters.catalog import CatalogFile
from mirror.adapters.upstream import Upstream
from mirror.core.plan import SyncPlan, WantedFile
from mirror.core.records import Record
from mirror.core.repodata_doc import indexed_times
from mirror.errors import MirrorError
from mirror.publish.names import REPODATA_JSON
from mirror.publish.settings import PublishSettings
from mirror.publish.subdir import publish_subdir
from mirror.reports import FileFailure
from mirror.sync.context import SyncContext
from mirror.sync.downloads import FileOutcome, PoolJob, run_pool

CATALOG_FLUSH_S = 2.0  # record installed files at least this often, so a crash loses little


@dataclass(frozen=True)
class Transferred:
    good: set[str]  # file names now in place with the right bytes (kept ones included)
    failures: list[FileFailure]
    downloaded: list[CatalogFile]
    verified: int  # found on disk and hashed instead of downloaded


class Transfer:
    """The download step of one channel/subdir sync."""

    def __init__(
        self, ctx: SyncContext, channel: str, subdir: str, settings: PublishSettings
    ) -> None:
        self.ctx, self.name, self.subdir = ctx, channel, subdir
        self.settings = settings

    def _fit_in_space(self, plan: SyncPlan) -> tuple[SyncPlan, list[FileFailure]]:
        """The downloads that fit on the disk with the margin; each one that does not is a
        failure naming it, and the others go on (one huge record cannot block the rest)."""
        room = self.ctx.tree.free_bytes()
        if room is None:  # an object store: no disk to fill
            return plan, []
        free = room - self.ctx.config.free_space_margin_bytes
        if plan.download_bytes <= free:
            return plan, []
        fits: list[WantedFile] = []
        failures: list[FileFailure] = []
        left = free
        for want in plan.download:
            size = want.size or 0
            if size <= left:
                fits.append(want)
                left -= size
                continue
            failures.append(
                FileFailure(
                    want.filename,
                    "no_space",
                    f"{want.filename}: {size / 1e6:,.1f} MB do not fit: "
                    f"{max(free, 0) / 1e6:,.1f} MB free under {self.ctx.tree.location} after the "
                    "free_space_margin; free some space, narrow the filters or lower "
                    "free_space_margin",
                )
            )
        return replace(plan, download=tuple(fits)), failures

    def run(self, upstream: Upstream, plan: SyncPlan, records: dict[str, Record]) -> Transferred:
        """The plan carried out file by file: what does not fit on the disk and names a local
        package holds are failures naming each file; the rest is downloaded and verified."""
        plan, no_room = self._fit_in_space(plan)
        moved = self._download(upstream, plan, records)
        conflicts = [
            FileFailure(
                w.filename,
                "name_conflict",
                f"{w.filename}: a different local package with this name is published here; "
                "it is never overwritten by a mirror",
            )
            for w in plan.conflicts
        ]
        return replace(moved, failures=no_room + moved.failures + conflicts)

    def _download(
        self, upstream: Upstream, plan: SyncPlan, records: dict[str, Record]
    ) -> Transferred:
        """Download and verify; each installed file enters the catalog with its record."""
        ctx = self.ctx
        moved = _Moved(good={w.filename for w in plan.keep})
        ctx.progress.start(
            f"{self.name}/{self.subdir}",
            len(plan.download) + len(plan.verify),
            plan.download_bytes + sum(w.size or 0 for w in plan.verify),
        )
        job = PoolJob(upstream, ctx.tree, self.name, self.subdir, ctx.stop, ctx.progress)
        entered = _Entered(records, self._published_times(plan.verify), int(ctx.clock() * 1000))
        last_flush = time.monotonic()
        try:
            for batch in run_pool(job, list(plan.download), list(plan.verify)):
                for outcome in batch:
                    moved.add(outcome, entered)
                if time.monotonic() - last_flush > CATALOG_FLUSH_S:
                    moved.failures += self._flush(moved.buffer, moved.fetched)
                    last_flush = time.monotonic()
        finally:
            moved.failures += self._flush(moved.buffer, moved.fetched)
            ctx.progress.finish()
        moved.failures += self._swap_in(moved.staged, moved.fetched)
        return moved.result()

    def _published_times(self, found: tuple[WantedFile, ...]) -> dict[str, tuple[str | None, int]]:
        """Files found in place but unknown to the catalog (its database was lost): the
        published repodata.json still says when each first entered the index (CEP-47), and a
        rebuild must not make every package look newly indexed."""
        if not found:
            return {}
        key = f"{self.ctx.tree.subdir_key(self.name, self.subdir)}/{REPODATA_JSON}"
        try:
            return indexed_times(self.ctx.tree.read(key))
        except (OSError, MirrorError):
            return {}

    def _swap_in(
        self, staged: list[tuple[CatalogFile, Path]], fetched: set[str]
    ) -> list[FileFailure]:
        """Upstream replaced files under names we publish. Their old records leave the
        published index first, then the new bytes take the names, and the new records are
        published with the rest: at no moment does an index name bytes it does not describe."""
        if not staged:
            return []
        ctx = self.ctx
        with ctx.catalog.transaction():
            ctx.catalog.retire_records(self.name, self.subdir, (f.filename for f, _ in staged))
        publish_subdir(ctx.tree, ctx.catalog, self.name, self.subdir, self.settings)
        rows = []
        for row, temp in staged:
            final = ctx.tree.package_key(self.name, self.subdir, row.filename)
            stat = ctx.tree.install(temp, final, sha256=row.sha256)
            rows.append(replace(row, size=stat.size, mtime_ns=stat.mtime_ns))
        return self._flush(rows, fetched)

    def _flush(self, buffer: list[CatalogFile], fetched: set[str]) -> list[FileFailure]:
        """Files enter the catalog only once they are durable, so neither the catalog nor any
        index built from it ever vouches for bytes a crash could still take away."""
        if not buffer:
            return []
        failures = self._make_durable([f.filename for f in buffer], fetched)
        lost = {f.filename for f in failures}
        with self.ctx.catalog.transaction():
            rows = [f for f in buffer if f.filename not in lost]
            self.ctx.catalog.put_files(self.name, self.subdir, rows)
        buffer.clear()
        return failures

    def _make_durable(self, filenames: list[str], fetched: set[str]) -> list[FileFailure]:
        """One sync for the batch; when it fails (a full network share reports it only now),
        file by file: a file this run fetched that cannot be made durable is removed (no index
        names it yet), one found in place is left for the next run to hash again."""
        tree = self.ctx.tree
        keys = {fn: tree.package_key(self.name, self.subdir, fn) for fn in filenames}
        try:
            tree.make_durable(keys.values())
            return []
        except MirrorError:
            pass
        failures = []
        for filename, key in keys.items():
            try:
                tree.make_durable([key])
            except MirrorError as exc:
                if filename in fetched:
                    with contextlib.suppress(OSError, MirrorError):
                        tree.remove(key)
                failures.append(FileFailure(filename, "store", str(exc)))
        return failures


@dataclass(frozen=True)
class _Entered:
    """What a file's catalog row gets besides its stats: its record, and when it was indexed."""

    records: dict[str, Record]
    published: dict[str, tuple[str | None, int]]  # filename -> (sha256, indexed_ms) published
    now_ms: int

    def row(self, installed: CatalogFile) -> CatalogFile:
        record = self.records[installed.filename]
        return replace(
            installed,
            name=record.fields.name,
            record=bytes(record.raw),
            indexed_ms=self._indexed_ms(installed),
        )

    def _indexed_ms(self, installed: CatalogFile) -> int:
        """The published time, when the published record describes exactly these bytes."""
        sha256, indexed_ms = self.published.get(installed.filename, (None, self.now_ms))
        return indexed_ms if sha256 is not None and sha256 == installed.sha256 else self.now_ms


@dataclass
class _Moved:
    """The files of one transfer as their outcomes arrive."""

    good: set[str]
    failures: list[FileFailure] = field(default_factory=list)
    downloaded: list[CatalogFile] = field(default_factory=list)
    fetched: set[str] = field(default_factory=set)  # names whose bytes this run installed
    verified: set[str] = field(default_factory=set)
    buffer: list[CatalogFile] = field(default_factory=list)  # for the next catalog flush
    staged: list[tuple[CatalogFile, Path]] = field(default_factory=list)

    def add(self, outcome: FileOutcome, entered: _Entered) -> None:
        if outcome.failure is not None:
            self.failures.append(outcome.failure)
            return
        assert outcome.installed is not None
        self.good.add(outcome.filename)
        row = entered.row(outcome.installed)
        if outcome.downloaded:
            self.downloaded.append(row)
            self.fetched.add(row.filename)
        else:
            self.verified.add(row.filename)
        if outcome.staged is not None:
            self.staged.append((row, outcome.staged))
        else:
            self.buffer.append(row)

    def result(self) -> Transferred:
        """Files that failed after their outcome (not durable) are failures, nothing else."""
        lost = {f.filename for f in self.failures}
        downloaded = [f for f in self.downloaded if f.filename not in lost]
        return Transferred(self.good - lost, self.failures, downloaded, len(self.verified - lost))
