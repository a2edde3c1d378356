"""Reading many package files in worker processes that never outlive their parent.

Reading is CPU-bound (decompression), so many files are spread over processes. The workers
come from a `forkserver`, never from a `fork` of this process: a forked worker inherits every
open descriptor of its parent, the writer lock among them, and a worker left behind by a
`kill -9` of the parent would hold the tree locked for ever. The fork server is a fresh
interpreter (exec'd, inheriting no descriptor but its own pipes) that exits when this process
does, once no worker holds its pipe. So each worker watches the mirror process itself (a
pidfd that becomes readable when it exits, else a poll) and exits with it, and asks the kernel
to kill it if the server goes first (Linux `PR_SET_PDEATHSIG`): none lingers. Forking workers
from a server that has already imported the reader costs ~0.25 s where `spawn` (a fresh
interpreter per worker) cost ~0.6 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mirror.adapters.archive import PackageInfo, read_package
from mirror.errors import ArchiveError

POOL_THRESHOLD = 48  # below this many files, starting processes costs more than it saves
ReadResult = PackageInfo | tuple[str, str]  # the package's metadata, or (reason, message)
_PR_SET_PDEATHSIG = 1


def read_packages(
    batches: Iterable[Sequence[Path]], *, total: int, workers: int, deep: bool
) -> Iterator[ReadResult]:
    """Each package's metadata (or why it is refused), in the order given. The files come in
    batches (an object store's are fetched a batch at a time), all read by one pool."""
    read = read_deep if deep else read_info
    if total < POOL_THRESHOLD or workers <= 1:
        for batch in batches:
            yield from (read(str(path)) for path in batch)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # not __main__: it is the mirror command
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        for batch in batches:
            yield from pool.map(read, [str(path) for path in batch], chunksize=32)


def die_with_parent(parent_pid: int) -> None:
    """In a worker: exit when the mirror process `parent_pid` exits, however it dies, and be
    killed if the fork server (the worker's own parent) dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        watched = os.pidfd_open(parent_pid)
    except ProcessLookupError:  # it died before we looked
        os._exit(1)
    except OSError:  # a kernel before 5.3
        watched = None
    threading.Thread(target=_exit_with, args=(parent_pid, watched), daemon=True).start()


def _exit_with(parent_pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the process has exited
        os._exit(1)
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        time.sleep(0.5)


def read_info(path: str) -> ReadResult:
    """Runs in a worker: exceptions with keyword arguments do not cross processes, so a
    refusal comes back as (reason, message)."""
    try:
        return read_package(Path(path))
    except ArchiveError as exc:
        return (exc.reason, str(exc))


def read_deep(path: str) -> ReadResult:
    try:
        return read_package(Path(path), deep=True)
    except ArchiveError as exc:
        return (exc.reason, str(exc))
