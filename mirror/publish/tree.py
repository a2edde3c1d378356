"""Opening the tree a configuration names (a directory on this host, or a bucket) and taking
its one-writer lock (an flock beside the tree, or a lease object in the bucket)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mirror.adapters.lock import WriterLock, WriterLocks, state_lock
from mirror.adapters.state_files import write_atomically
from mirror.adapters.store import ChannelTree, local_tree
from mirror.config.model import MirrorConfig
from mirror.core.bucket_location import BucketLocation
from mirror.errors import LeaseLostError

if TYPE_CHECKING:  # imported when a tree is in a bucket: obstore costs a local run ~35 ms
    from mirror.adapters.objectstore import Lease, LeaseTiming
    from mirror.adapters.objectstore.tree_store import BucketStore

log = logging.getLogger(__name__)

STAGING_DIR = "staging"  # under the state directory: bytes on their way into a bucket
# under the state directory: the lease holder id of the last run that used it, so that a run
# following one that was killed takes the dead run's lease over at once (it holds the state
# directory's lock, so that run is gone) instead of standing by until the lease expires
LEASE_HOLDER_FILE = "lease-holder"


def open_tree(config: MirrorConfig) -> ChannelTree:
    if config.bucket is not None:
        return ChannelTree(
            bucket_store(config.bucket, config.state_dir, config.storage.max_uploads)
        )
    assert config.root is not None
    return local_tree(config.root)


@functools.lru_cache(maxsize=8)
def bucket_store(location: BucketLocation, state_dir: Path, max_uploads: int = 8) -> BucketStore:
    """One store (one connection pool, one record of what the writer saw) per bucket and
    state directory in a process, shared by every use case that opens the tree."""
    from mirror.adapters.objectstore import Bucket
    from mirror.adapters.objectstore.tree_store import BucketStore

    return BucketStore(Bucket(location), state_dir / STAGING_DIR, max_uploads=max_uploads)


def lease_timing(ttl_s: float) -> LeaseTiming:
    """Renewed three times per term; host clocks may disagree by a tenth of it (at most 5 s)."""
    from mirror.adapters.objectstore import LeaseTiming

    return LeaseTiming(ttl_s=ttl_s, renew_every_s=ttl_s / 3, clock_skew_s=min(5.0, ttl_s / 10))


class TreeWriter:
    """What every command that writes a tree holds: the state directory's lock, and the
    tree's (an flock on a disk, the lease in a bucket: released by the kernel, or expiring,
    when the holder dies). `on_lost`: a bucket's lease was taken over or lapsed."""

    def __init__(
        self,
        state_dir: Path,
        *,
        root: Path | None = None,
        bucket: BucketLocation | None = None,
        lease_ttl_s: float = 60.0,
        max_uploads: int = 8,
        on_lost: Callable[[LeaseLostError], None] | None = None,
    ) -> None:
        self.state_dir, self.bucket, self.lease_ttl_s = state_dir, bucket, lease_ttl_s
        self.max_uploads = max_uploads  # with bucket and state_dir: which shared store
        self._on_lost = on_lost
        self._local: WriterLocks | None = None
        self._state: WriterLock | None = None
        self._lease: Lease | None = None
        if bucket is None:
            assert root is not None
            self._local = WriterLocks(root, state_dir)
        else:
            self._state = state_lock(state_dir)

    @classmethod
    def for_config(
        cls, config: MirrorConfig, on_lost: Callable[[LeaseLostError], None] | None = None
    ) -> TreeWriter:
        return cls(
            config.state_dir,
            root=config.root,
            bucket=config.bucket,
            lease_ttl_s=config.storage.lease_ttl_s,
            max_uploads=config.storage.max_uploads,
            on_lost=on_lost,
        )

    def acquire(self) -> None:
        if self._local is not None:
            self._local.acquire()
            return
        assert self._state is not None and self.bucket is not None
        self._state.acquire()
        lease: Lease | None = None
        try:
            from mirror.adapters.objectstore import Lease

            store = self._store()
            lease = Lease(store.bucket, timing=lease_timing(self.lease_ttl_s))
            lease.acquire(successor_of=self._last_holder())
            write_atomically(self.state_dir / LEASE_HOLDER_FILE, lease.holder.encode())
        except BaseException:
            if lease is not None:
                lease.release()  # not held: does nothing
            self._state.release()
            raise
        lease.keep_renewed(on_lost=self._on_lost)
        store.begin_writing(lease.check)
        self._lease = lease

    def _store(self) -> BucketStore:
        assert self.bucket is not None
        return bucket_store(self.bucket, self.state_dir, self.max_uploads)

    def _last_holder(self) -> str | None:
        try:
            return (self.state_dir / LEASE_HOLDER_FILE).read_text().strip() or None
        except OSError:
            return None

    def check_soon(self) -> None:
        """A conditional write was refused: renew the bucket's lease now, so that a writer
        whose lease was taken over hears of it (`on_lost`) at once, not at the next renewal."""
        if self._lease is not None:
            self._lease.renew_soon()

    def release(self) -> None:
        if self._local is not None:
            self._local.release()
            return
        if self._lease is not None and self.bucket is not None:
            self._store().end_writing()
            self._lease.release()
            self._lease = None
        if self._state is not None:
            self._state.release()

    def __enter__(self) -> TreeWriter:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
