"""The bounded download pool of one subdir: fetch or re-verify files, install only verified ones."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
    workers: int
    stop: threading.Event
    progress: Progress


def run_pool(
    job: PoolJob, download: list[WantedFile], verify: list[WantedFile]
) -> Iterator[FileOutcome]:
    """Yield each file's outcome as it completes. On a stop request, pending work is dropped and
    Interrupted is raised once in-flight files have finished or been abandoned (their temp
    files are removed, nothing half-written is installed)."""
    tasks: Sequence[tuple[Callable[[JobArgs], FileOutcome], WantedFile]] = [
        (_verify_then_fetch, w) for w in verify
    ] + [(_fetch, w) for w in download]
    if not tasks:
        return
    # Completed futures arrive through a queue: waiting on the set of pending futures would
    # cost O(pending) per completion, which dominated syncs of thousands of small files.
    finished: queue.SimpleQueue[Future[FileOutcome]] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=job.workers, thread_name_prefix="download") as pool:
        futures = []
        for task, want in tasks:
            future = pool.submit(task, JobArgs(job, want))
            future.add_done_callback(finished.put)
            futures.append(future)
        try:
            for _ in futures:
                while True:
                    if job.stop.is_set():
                        raise Interrupted("stop requested")
                    try:
                        done = finished.get(timeout=0.5)
                        break
                    except queue.Empty:
                        continue
                yield done.result()
        finally:
            for future in futures:
                future.cancel()


@dataclass(frozen=True)
class JobArgs:
    job: PoolJob
    want: WantedFile


def _verify_then_fetch(args: JobArgs) -> FileOutcome:
    """A file already on disk but unknown to the catalog: hash it; fetch only if it is wrong."""
    job, want = args.job, args.want
    key = job.tree.package_key(job.channel, job.subdir, want.filename)
    try:
        stat = job.tree.stat(key)
        size, sha256, md5 = job.tree.digest(key)
    except (OSError, MirrorError):
        return _fetch(args)
    if stat is not None and want.same_content(size, sha256, md5):
        job.progress.advance(size)
        job.progress.file_done()
        return FileOutcome(
            want.filename,
            CatalogFile(want.filename, stat.size, stat.mtime_ns, sha256, md5, ORIGIN_MIRROR),
            downloaded=False,
            failure=None,
        )
    log.info(
        "%s/%s: %s on disk differs from upstream; fetching it again",
        job.channel,
        job.subdir,
        want.filename,
    )
    return _fetch(args)


def _fetch(args: JobArgs) -> FileOutcome:
    job, want = args.job, args.want
    final = job.tree.package_key(job.channel, job.subdir, want.filename)
    temp: Path = job.tree.staging_path(job.channel, job.subdir)
    try:
        got = job.upstream.download(
            job.subdir, want, temp, job.progress.advance, durable=job.tree.store.durable_staging
        )
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
