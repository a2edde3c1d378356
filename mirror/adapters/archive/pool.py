"""Reading many package files in worker processes that never outlive their parent.

Reading is CPU-bound (decompression), so many files are spread over processes. The workers
are started with `spawn`, not `fork`: a forked worker inherits every open descriptor of its
parent, the writer lock among them, and a worker left behind by a `kill -9` of the parent
would hold the tree locked for ever. Each worker also asks the kernel to kill it when its
parent dies (Linux `PR_SET_PDEATHSIG`), so none lingers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
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
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        for batch in batches:
            yield from pool.map(read, [str(path) for path in batch], chunksize=32)


def die_with_parent(parent_pid: int) -> None:
    """In a worker: be killed when the parent dies, however it dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above
        os._exit(1)


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
