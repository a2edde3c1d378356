"""The download threads of one subdir: fetch or re-verify files, install only verified ones."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.catalog import CatalogFile
from mirror.adapters.store import ChannelTree
from mirror.adapters.upstream import Upstream
from mirror.core.plan import ORIGIN_MIRROR, WantedFile
from mirror.errors import Interrupted, MirrorError, UpstreamError
from mirror.progress import Progress
from mirror.reports import FileFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOutcome:
    """One file's result: `installed` is set when the file is now good on disk."""

    filename: str
    installed: CatalogFile | None
    downloaded: bool  # False when an existing file only had to be hashed
    failure: FileFailure | None
    # New bytes for a name that already has a file: verified, but left in this temp file for
    # the caller to swap in once no published index names the old bytes any more.
    staged: Path | None = None


@dataclass(frozen=True)
class PoolJob:
    upstream: Upstream
    tree: ChannelTree
    channel: str
    subdir: str
    stop: threading.Event
    progress: Progress


Task = Callable[[PoolJob, WantedFile], FileOutcome]
BATCH_S = 0.25  # how often the caller gets the files done meanwhile (and a stop is noticed)


def run_pool(
    job: PoolJob, download: list[WantedFile], verify: list[WantedFile]
) -> Iterator[list[FileOutcome]]:
    """Yield the outcomes of the files done since the last batch, about every BATCH_S. On a
    stop request, pending work is dropped; once in-flight files have finished or been abandoned
    (their temp files are removed, nothing half-written is installed), the files done are
    yielded and Interrupted is raised. An unexpected error in a thread is raised here."""
    tasks: list[tuple[Task, WantedFile]] = [(_verify_then_fetch, w) for w in verify]
    tasks += [(_fetch, w) for w in download]
    if not tasks:
        return
    crew = _Crew(job, tasks)
    crew.grow()
    try:
        while True:
            finished = crew.finished.wait(BATCH_S)
            if job.stop.is_set():
                crew.join()
                if done := crew.take():
                    yield done
                raise Interrupted("stop requested")
            if done := crew.take():
                yield done
            if finished:
                return
    finally:
        crew.join()


class _Crew:
    """The download threads of one pool, each taking the next file until none is left. There
    are as many as the upstream may have requests in flight (the pool grows as a host's limit
    grows): a thread more would only wait for a slot, and waking it for nothing each time a
    request ends cost more than the requests themselves on a fast upstream. Outcomes collect
    here until the caller takes them in batches, which wakes it a few times a second, not once
    per file."""

    def __init__(self, job: PoolJob, tasks: list[tuple[Task, WantedFile]]) -> None:
        self.job = job
        self.tasks = deque(tasks)
        self.results: deque[FileOutcome | BaseException] = deque()
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._abort = False

    def grow(self) -> None:
        """Start threads up to the upstream's current limit (never more than files left)."""
        with self._lock:
            wanted = min(self.job.upstream.transfer_threads(), len(self.tasks))
            while self._running < wanted and not self._abort:
                name = f"download-{self.job.channel}-{self.job.subdir}-{len(self._threads)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                self._threads.append(thread)
                self._running += 1
                thread.start()

    def _work(self) -> None:
        try:
            while not self._abort and not self.job.stop.is_set():
                try:
                    task, want = self.tasks.popleft()
                except IndexError:
                    break
                try:
                    self.results.append(task(self.job, want))
                except BaseException as exc:  # Interrupted, or a bug: the caller raises it
                    self.results.append(exc)
                    self._abort = True
                    break
                self.grow()
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self.finished.set()

    def take(self) -> list[FileOutcome]:
        """The outcomes collected so far; a thread's unexpected error is raised (after the
        other threads have finished their files). A thread stopped by a stop request has
        nothing to say: the caller sees the request itself."""
        done: list[FileOutcome] = []
        while self.results:
            item = self.results.popleft()
            if isinstance(item, Interrupted):
                continue
            if isinstance(item, BaseException):
                self.join()
                raise item
            done.append(item)
        return done

    def join(self) -> None:
        """No new file is started; wait for those in flight."""
        self._abort = True
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()


def _verify_then_fetch(job: PoolJob, want: WantedFile) -> FileOutcome:
    """A file already on disk but unknown to the catalog: hash it; fetch only if it is wrong."""
    key = job.tree.package_key(job.channel, job.subdir, want.filename)
    try:
        stat = job.tree.stat(key)
        size, sha256, md5 = job.tree.digest(key, with_md5=want.sha256 is None)
    except (OSError, MirrorError):
        return _fetch(job, want)
    if stat is not None and want.same_content(size, sha256, md5):
        job.progress.advance(size)
        job.progress.file_done()
        known_md5 = md5 or None  # "" when not computed
        return FileOutcome(
            want.filename,
            CatalogFile(want.filename, stat.size, stat.mtime_ns, sha256, known_md5, ORIGIN_MIRROR),
            downloaded=False,
            failure=None,
        )
    log.info(
        "%s/%s: %s on disk differs from upstream; fetching it again",
        job.channel,
        job.subdir,
        want.filename,
    )
    return _fetch(job, want)


def _fetch(job: PoolJob, want: WantedFile) -> FileOutcome:
    final = job.tree.package_key(job.channel, job.subdir, want.filename)
    temp: Path = job.tree.staging_path(job.channel, job.subdir)
    try:
        got = job.upstream.download(job.subdir, want, temp, job.progress.advance)
        try:
            stat = job.tree.install(temp, final, sha256=got.sha256, create_only=True)
        except FileExistsError:
            # replacing it here would make the record currently published for it lie
            job.progress.file_done()
            staged = CatalogFile(want.filename, got.size, 0, got.sha256, got.md5, ORIGIN_MIRROR)
            return FileOutcome(want.filename, staged, True, None, staged=temp)
    except Interrupted:
        raise
    except UpstreamError as exc:
        job.progress.file_done()
        return FileOutcome(
            want.filename, None, True, FileFailure(want.filename, exc.reason, str(exc))
        )
    except MirrorError as exc:
        job.progress.file_done()
        return FileOutcome(want.filename, None, True, FileFailure(want.filename, "store", str(exc)))
    job.progress.file_done()
    return FileOutcome(
        want.filename,
        CatalogFile(want.filename, stat.size, stat.mtime_ns, got.sha256, got.md5, ORIGIN_MIRROR),
        downloaded=True,
        failure=None,
    )
