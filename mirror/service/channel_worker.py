"""One channel's worker thread: runs its syncs, drop batches, start-up reconcile and quiet-time
recompression one at a time, with its own catalog connection.

Work is queued by flags and a set: a sync requested while one is queued is absorbed (missed
runs coalesce), and drops are taken once they have been quiet for debounce_s (a burst of
1,000 files becomes a few batches).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import QUARANTINE_DIR, ChannelMarker, Quarantine
from mirror.bundles.export import export_to_outbox
from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.secrets import Redactor
from mirror.core.tree_store import join
from mirror.errors import Interrupted, MirrorError, StoreConflictError
from mirror.local.drops import DropContext, admit_drops
from mirror.local.indexer import IndexContext, index_channel
from mirror.local.watch_plan import FolderWatch
from mirror.publish.names import REPODATA_JSON
from mirror.publish.recompress import recompress
from mirror.publish.snapshot import snapshot_channel
from mirror.publish.tree import open_tree
from mirror.reports import DropResult
from mirror.service.metrics import MirrorMetrics
from mirror.sync.run import SyncContext, SyncOptions, sync

log = logging.getLogger(__name__)


class WorkerHost(Protocol):
    """What a worker needs from the daemon that runs it (the daemon is one; tests may pass
    another). `config` is read once per task: a reload replaces it."""

    config: MirrorConfig
    metrics: MirrorMetrics
    watch_plan: tuple[FolderWatch, ...]
    stopping: threading.Event
    http: httpx.Client | None
    redactor: Redactor
    env: dict[str, str]

    def publish_schedule(self) -> None: ...
    def requeue_drop(self, path: Path, channel: str) -> None: ...
    def writes_refused(self) -> None: ...


@dataclass
class _Work:
    index: bool = False  # reconcile a local channel with its folders (start-up)
    sync: bool = False
    drops: dict[Path, float] = field(default_factory=dict)  # path -> when it was complete
    last_drop: float = 0.0


class ChannelWorker:
    """Runs one channel's tasks in order on its own thread (with its own catalog connection)."""

    def __init__(self, daemon: WorkerHost, channel: ChannelConfig) -> None:
        self.daemon = daemon
        self.channel = channel  # replaced on reload; read once per task
        self._work = _Work()
        self._cond = threading.Condition()
        self._last_publish = 0.0
        self._recompressed = True
        self._snapshot_due = False
        self._retire = False
        self._changed_subdirs: set[str] = set()
        self._gauges_set = False
        self.thread = threading.Thread(
            target=self._run, name=f"channel-{channel.name}", daemon=True
        )

    def request_index(self) -> None:
        with self._cond:
            self._work.index = True
            self._cond.notify()

    def request_sync(self) -> None:
        with self._cond:
            self._work.sync = True
            self._cond.notify()

    def add_drop(self, path: Path, ready_at: float) -> None:
        with self._cond:
            self._work.drops.setdefault(path, ready_at)
            self._work.last_drop = time.monotonic()
            self._cond.notify()

    def retire(self) -> None:
        with self._cond:
            self._retire = True
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _take(self) -> tuple[str, dict[Path, float]] | None:
        """The next task: drops once they have been quiet for debounce_s, else a sync."""
        service = self.daemon.config.service
        with self._cond:
            while True:
                if self.daemon.stopping.is_set() or self._retire:
                    return None
                now = time.monotonic()
                if self._work.index:
                    self._work.index = False
                    return "index", {}
                if self._work.drops and now - self._work.last_drop >= service.debounce_s:
                    drops, self._work.drops = self._work.drops, {}
                    return "drops", drops
                if self._work.sync:
                    self._work.sync = False
                    return "sync", {}
                if self._snapshot_due and not self._work.drops:
                    self._snapshot_due = False  # a burst of drops makes one snapshot
                    return "snapshot", {}
                timeout = service.debounce_s if self._work.drops else 1.0
                if not self._work.drops and not self._recompressed:
                    idle = now - self._last_publish
                    if idle >= service.recompress_after_s:
                        return "recompress", {}
                    timeout = min(timeout, service.recompress_after_s - idle)
                self._cond.wait(timeout=max(timeout, 0.01))

    def _publish_quiet_drops(self, catalog: Catalog) -> None:
        """Between the subdirs of a sync: a drop into a mirrored channel waits for the subdir
        being synced, not for the whole run. Drops still arriving wait for their quiet time."""
        with self._cond:
            quiet = time.monotonic() - self._work.last_drop >= self.daemon.config.service.debounce_s
            if not self._work.drops or not quiet:
                return
            drops, self._work.drops = self._work.drops, {}
        self._drops(catalog, drops)
        self._snapshot_due = True

    def _run(self) -> None:
        self._mark_channel()
        with Catalog.in_state_dir(self.daemon.config.state_dir) as catalog:
            while (task := self._take()) is not None:
                kind, drops = task
                try:
                    if kind == "index":
                        self._index(catalog)
                    elif kind == "sync":
                        self._sync(catalog)
                    elif kind == "drops":
                        self._drops(catalog, drops)
                        self._snapshot_due = True
                    elif kind == "snapshot":
                        config = self.daemon.config
                        snapshot_channel(
                            open_tree(config), config.state_dir, catalog, self.channel.name
                        )
                    else:
                        self._recompress(catalog)
                except Interrupted:
                    log.info("%s: %s stopped before finishing", self.channel.name, kind)
                except StoreConflictError as exc:
                    # another writer published in this tree: this daemon may have lost it
                    log.error("%s: %s failed: %s", self.channel.name, kind, exc)
                    self.daemon.writes_refused()
                except MirrorError as exc:  # said plainly: no traceback for a known failure
                    log.error("%s: %s failed: %s", self.channel.name, kind, exc)
                except Exception:  # a failing run is logged and counted; the daemon goes on
                    log.exception("%s: task failed", self.channel.name)
                self._update_gauges(catalog)

    def _mark_channel(self) -> None:
        """Say who keeps the channel folder, so `mirror index` works through this catalog (or
        refuses a mirrored channel) instead of rebuilding records behind the daemon's back."""
        config, channel = self.daemon.config, self.channel
        kind = "mirrored" if channel.mirrored else "local"
        marker = ChannelMarker(kind, str(config.state_dir), str(config.source))
        try:
            open_tree(config).mark_channel(channel.name, marker)
        except MirrorError as exc:  # a read-only or full tree: the tasks will say so too
            log.warning("%s: %s", channel.name, exc)

    def _sync(self, catalog: Catalog) -> None:
        daemon, channel = self.daemon, self.channel
        started = time.monotonic()
        ctx = SyncContext(
            config=daemon.config,
            tree=open_tree(daemon.config),
            catalog=catalog,
            http=daemon.http,
            redactor=daemon.redactor,
            stop=daemon.stopping,
            env=daemon.env,
            between_subdirs=lambda: self._publish_quiet_drops(catalog),
        )
        report = sync(ctx, SyncOptions(channels=(channel.name,), only_named=True))
        daemon.metrics.record_sync(channel.name, report, time.monotonic() - started, time.time())
        for sub in report.subdirs:
            if sub.repodata_changed:
                self._published(sub.subdir)
        daemon.publish_schedule()
        if daemon.config.bundles.outbox is not None and not daemon.stopping.is_set():
            self._export()

    def _export(self) -> None:
        """A bundle of what changed since the last one, for a one-way transfer system."""
        started = time.monotonic()
        try:
            report = export_to_outbox(self.daemon.config, self.channel.name)
        except MirrorError as exc:
            log.error("%s: export to the outbox failed: %s", self.channel.name, exc)
            self.daemon.metrics.record_export(
                self.channel.name, 0, time.monotonic() - started, False
            )
            return
        if report is not None and report.path is not None:
            log.info("%s: wrote %s (%d bytes)", self.channel.name, report.path, report.bytes)
            self.daemon.metrics.record_export(self.channel.name, report.bytes, report.seconds, True)

    def _index(self, catalog: Catalog) -> None:
        """At start: files put into (or removed from) a local channel's folders while the
        daemon was down, and configured subdirs without repodata yet. For a mirrored channel
        only when the state database does not know its published subdirs (lost or new), so a
        drop can never publish an index that forgets what was there."""
        config = self.daemon.config
        channel = self.channel
        tree = open_tree(config)
        if channel.mirrored and not any(
            tree.stat(join(tree.subdir_key(channel.name, s), REPODATA_JSON)) is not None
            and not catalog.outputs(channel.name, s)
            for s in channel.subdirs
        ):
            return
        ctx = IndexContext(
            tree=tree,
            catalog=catalog,
            quarantine=Quarantine(config.state_dir / QUARANTINE_DIR),
            settings=channel.index,
            local_channel=not channel.mirrored,
        )
        report = index_channel(ctx, channel.name, channel.subdirs)
        for sub in report.subdirs:
            if sub.published and sub.published.changed:
                self._published(sub.subdir)
            for quarantined in sub.quarantined:
                self.daemon.metrics.quarantined.labels(self.channel.name, quarantined.reason).inc()

    def _drops(self, catalog: Catalog, drops: dict[Path, float]) -> None:
        daemon, channel = self.daemon, self.channel
        ctx = DropContext(
            tree=open_tree(daemon.config),
            catalog=catalog,
            quarantine=Quarantine(daemon.config.state_dir / QUARANTINE_DIR),
            fresh_s=self._fresh_s(),
            on_outcome=lambda outcome: daemon.metrics.record_drop(channel.name, outcome),
        )
        report = admit_drops(ctx, channel, sorted(drops))
        visible_at = time.monotonic()
        for outcome in report.outcomes:
            if outcome.result == DropResult.PUBLISHED:
                daemon.metrics.drop_to_visible.labels(channel.name).observe(
                    visible_at - drops[outcome.source]
                )
            elif outcome.result == DropResult.DEFERRED:
                daemon.requeue_drop(outcome.source, channel.name)
        for published in report.published:
            daemon.metrics.index_duration.labels(channel.name).observe(published.seconds)
            self._published(published.subdir)
        if report.published:  # one line per batch, not per subdir it touched
            log.info(
                "%s: %d drops published, %d duplicates, %d quarantined, %d deferred in %.2f s",
                channel.name,
                report.count(DropResult.PUBLISHED),
                report.count(DropResult.DUPLICATE),
                report.count(DropResult.QUARANTINED),
                report.count(DropResult.DEFERRED),
                report.seconds,
            )

    def _fresh_s(self) -> float:
        """A drop that fails to read and changed within this time may still be being written:
        twice the longest settle time of the channel's folders (a polled share's is longer)."""
        settle_s = max(
            (w.settle_s for w in self.daemon.watch_plan if w.channel == self.channel.name),
            default=self.daemon.config.service.settle_s,
        )
        return max(2 * settle_s, 2.0)

    def _published(self, subdir: str) -> None:
        self._last_publish = time.monotonic()
        self._recompressed = False
        self._changed_subdirs.add(subdir)

    def _recompress(self, catalog: Catalog) -> None:
        """The subdir has been quiet: raise its .zst from the fast level to the final one."""
        self._recompressed = True
        tree = open_tree(self.daemon.config)
        for subdir in catalog.subdirs(self.channel.name):
            if self.daemon.stopping.is_set():
                return
            if recompress(tree, catalog, self.channel.name, subdir):
                log.info("%s/%s: recompressed repodata.json.zst", self.channel.name, subdir)

    def _update_gauges(self, catalog: Catalog) -> None:
        """Only subdirs that changed: counting a 500,000-record subdir takes a moment."""
        subdirs = (
            self._changed_subdirs if self._gauges_set else set(catalog.subdirs(self.channel.name))
        )
        for subdir in sorted(subdirs):
            packages, size = catalog.published_stats(self.channel.name, subdir)
            self.daemon.metrics.set_published(self.channel.name, subdir, packages, size)
        self._changed_subdirs = set()
        self._gauges_set = True
