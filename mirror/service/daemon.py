"""The long-running service: scheduled syncs, drop-folder watching, metrics, signals.

One worker thread per channel does all of that channel's writing (syncs, drops, background
recompression), one task at a time: at most one run per channel, and a drop into a local
channel never waits for a long conda-forge sync. The scheduler (apscheduler 3) and the watcher
only queue work; a run that is already queued absorbs the next one (missed runs coalesce).
The single-writer lock is held for the daemon's life.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from mirror.adapters.catalog import Catalog
from mirror.adapters.systemd_notify import Notifier
from mirror.adapters.upstream import make_http_client
from mirror.adapters.watcher import DropWatcher, WatchedFolder
from mirror.config import MirrorConfig, load_config
from mirror.config.model import ChannelConfig
from mirror.core.secrets import Redactor, url_secrets
from mirror.errors import LeaseLostError, LockBusyError, MirrorError
from mirror.health.status import collect_status
from mirror.local.watch_plan import FolderWatch, plan_watch
from mirror.publish.tree import TreeWriter
from mirror.service.channel_worker import ChannelWorker
from mirror.service.http import StatusApp, serve_status
from mirror.service.metrics import MirrorMetrics

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 8.0


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        registry: CollectorRegistry | None = None,
        env: dict[str, str] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.config_path = config_path
        self.config: MirrorConfig = load_config(config_path)
        self.env = dict(env if env is not None else os.environ)
        self.redactor = redactor or Redactor()
        self.registry = registry or CollectorRegistry()
        self.metrics = MirrorMetrics(self.registry)
        self.stopping = threading.Event()
        self._reload = threading.Event()
        self.workers: dict[str, ChannelWorker] = {}
        self.watcher: DropWatcher | None = None
        self.watch_plan: tuple[FolderWatch, ...] = ()  # how each drop folder is watched
        self.http: httpx.Client | None = None
        self._scheduler: Any = None
        self._metrics_server: Any = None
        self.lease_lost = False
        self._lock = TreeWriter.for_config(self.config, on_lost=self._lease_lost)
        self._notifier = Notifier(self.env)
        self._control = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT (or `stop()`); SIGHUP reloads the config."""
        if install_signals:
            self._install_signals()
        if not self._take_tree():
            return 0
        try:
            self._start()
            self._notifier.send("READY=1")
            log.info("mirror daemon ready: %d channels", len(self.config.channels))
            self._serve()
        finally:
            self._notifier.send("STOPPING=1")
            self._shutdown()
            self._lock.release()
        return 1 if self.lease_lost else 0  # a non-zero exit: systemd starts it again

    def stop(self) -> None:
        self.stopping.set()

    def _take_tree(self) -> bool:
        """The tree's writer lock. A tree in a bucket may be written by a daemon on another
        host: this one stands by, saying who holds the lease, until it is free (or it is
        stopped: False). A local tree's lock held by another process is an error."""
        while True:
            try:
                self._lock.acquire()
                return True
            except LockBusyError as exc:
                if self.config.bucket is None:
                    raise
                log.warning("standing by: %s", exc)
                if self.stopping.wait(min(30.0, self.config.storage.lease_ttl_s / 3)):
                    return False

    def _lease_lost(self, exc: LeaseLostError) -> None:
        """Another host took the tree over: stop at once (systemd starts this daemon again,
        and it stands by until the lease is free)."""
        log.error("stopping: %s", exc)
        self.lease_lost = True
        self.stopping.set()

    def writes_refused(self) -> None:
        """A worker's conditional write was refused: is the lease still ours?"""
        self._lock.check_soon()

    def reload(self) -> None:
        self._reload.set()

    def _start(self) -> None:
        self.redactor.add(s for c in self.config.channels for s in url_secrets(c.upstream or ""))
        self.http = make_http_client(
            max((c.transfer.max_connections_per_host for c in self.config.channels), default=32)
        )
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        Catalog.in_state_dir(self.config.state_dir).close()  # create it before the threads do
        self._start_metrics_server()
        for channel in self.config.channels:
            self._add_worker(channel)
        self._start_scheduler()
        self._start_watcher()

    def _serve(self) -> None:
        interval = self._notifier.watchdog_interval_s
        while not self.stopping.wait(min(interval or 1.0, 1.0)):
            if interval:
                self._notifier.send("WATCHDOG=1")
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload()

    def _shutdown(self) -> None:
        """No new work; in-flight downloads are abandoned (temp files removed), drops finish
        the file in hand; every index published so far stays consistent."""
        self.stopping.set()
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
        if self.watcher is not None:
            self.watcher.stop()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers.values():
            worker.wake()
        for worker in self.workers.values():
            worker.thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._metrics_server is not None:
            server, thread = self._metrics_server
            server.shutdown()
            server.server_close()
            thread.join(timeout=2)
        if self.http is not None:
            self.http.close()
        log.info("mirror daemon stopped")

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # -- parts ------------------------------------------------------------------------------

    def _add_worker(self, channel: ChannelConfig) -> None:
        worker = ChannelWorker(self, channel)
        self.workers[channel.name] = worker
        worker.thread.start()
        worker.request_index()  # reconcile with the folders first (cheap when nothing changed)
        if channel.mirrored and channel.schedule and channel.schedule.at_start:
            worker.request_sync()

    def _start_metrics_server(self) -> None:
        service = self.config.service
        if service.metrics_host is None:
            return
        try:
            # one listener: the status page at /, /status.json and /metrics
            app = StatusApp(
                self.registry, lambda: collect_status(self.config, self.watch_plan), self.redactor
            )
            self._metrics_server = serve_status(service.metrics_host, service.metrics_port, app)
        except OSError as exc:
            raise MirrorError(
                f"cannot serve metrics on {service.metrics_host}:{service.metrics_port}: "
                f"{exc.strerror}; change metrics.listen"
            ) from exc
        log.info(
            "status page on http://%s:%d/, metrics on /metrics",
            service.metrics_host,
            service.metrics_port,
        )

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._schedule_jobs()
        self._scheduler.start()
        self.publish_schedule()

    def _schedule_jobs(self) -> None:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        self._scheduler.remove_all_jobs()
        for channel in self.config.channels:
            schedule = channel.schedule
            if schedule is None or not channel.mirrored:
                continue
            jitter = int(schedule.jitter_s) or None
            if schedule.cron:
                trigger: Any = CronTrigger.from_crontab(schedule.cron, timezone="UTC")
                trigger.jitter = jitter
            else:
                assert schedule.interval_minutes is not None
                trigger = IntervalTrigger(minutes=schedule.interval_minutes, jitter=jitter)
            self._scheduler.add_job(
                self._request_sync,
                trigger,
                args=(channel.name,),
                id=f"sync:{channel.name}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                replace_existing=True,
            )
        self.metrics.set_schedules(
            {c.name: c.schedule for c in self.config.channels if c.schedule and c.mirrored},
            datetime.now(UTC),
        )

    def _request_sync(self, name: str) -> None:
        worker = self.workers.get(name)
        if worker is not None:
            worker.request_sync()
        self.publish_schedule()

    def publish_schedule(self) -> None:
        """Write next run times to the state database, where `mirror status` reads them."""
        if self._scheduler is None:
            return
        next_runs: dict[str, float | None] = {}
        for job in self._scheduler.get_jobs():
            name = job.id.split(":", 1)[1]
            when = getattr(job, "next_run_time", None)
            next_runs[name] = when.timestamp() if when else None
        with (
            contextlib.suppress(MirrorError),
            Catalog.in_state_dir(self.config.state_dir) as catalog,
            catalog.transaction(),
        ):
            catalog.set_next_runs(next_runs)

    def _start_watcher(self) -> None:
        """Decide each folder's mode from its filesystem now (a share mounted since the last
        start or reload is seen), log it, export it, then watch."""
        self.watch_plan = plan_watch(self.config)
        self.metrics.set_watch_modes((w.channel, w.folder_index, w.mode) for w in self.watch_plan)
        if not self.watch_plan:
            self.watcher = None
            return
        for watch in self.watch_plan:
            log.info(
                "%s: drop folder %d %s: %s",
                watch.channel,
                watch.folder_index,
                watch.path,
                watch.describe(),
            )
        self.watcher = DropWatcher(
            {
                w.path: WatchedFolder(w.channel, w.settle_s, w.polled, w.poll_interval_s)
                for w in self.watch_plan
            },
            on_ready=self._on_drop,
            on_event=lambda kind: self.metrics.watch_events.labels(kind).inc(),
        )
        self.watcher.start()
        log.info("watching %d drop folders", len(self.watch_plan))

    def requeue_drop(self, path: Path, channel: str) -> None:
        """Look at a dropped file again later (it changed while it was being taken)."""
        if self.watcher is not None:
            self.watcher.requeue(path, channel)

    def _on_drop(self, channel: str, path: Path, ready_at: float) -> None:
        worker = self.workers.get(channel)
        if worker is not None:
            worker.add_drop(path, ready_at)

    def _apply_reload(self) -> None:
        """SIGHUP: validate the new config first; on any error keep running on the old one."""
        try:
            new = load_config(self.config_path)
        except MirrorError as exc:
            log.error(
                "reload refused, keeping the running configuration: %s", self.redactor(str(exc))
            )
            return
        if (new.tree_location, new.state_dir) != (self.config.tree_location, self.config.state_dir):
            log.error("reload refused: root and state_dir change only with a restart")
            return
        with self._control:
            self.redactor.add(s for c in new.channels for s in url_secrets(c.upstream or ""))
            old_names = set(self.workers)
            self.config = new
            for channel in new.channels:
                if channel.name in self.workers:
                    self.workers[channel.name].channel = channel
                else:
                    self._add_worker(channel)
            for name in old_names - {c.name for c in new.channels}:
                self.workers.pop(name).retire()
            self._schedule_jobs()
            if self.watcher is not None:
                self.watcher.stop()
            self._start_watcher()
            self.publish_schedule()
        log.info("configuration reloaded from %s", self.config_path)
