"""Reading a tree's files in bulk: batches fetched one ahead, and an object read as a stream."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mirror.adapters.objectstore.reader import ChunkReader
from mirror.adapters.store import ChannelTree, local_tree


class FetchLog:
    """A store whose local_files() notes when each batch is fetched and removed."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def local_files(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        with self.lock:
            self.events.append(f"fetch {keys[0]}")
        try:
            yield [Path(key) for key in keys]
        finally:
            with self.lock:
                self.events.append(f"remove {keys[0]}")


def test_batches_come_in_order_and_each_is_removed_once_the_next_is_asked_for() -> None:
    log = FetchLog()
    tree = ChannelTree(log)  # type: ignore[arg-type]
    seen = []
    for paths in tree.local_batches([["a1", "a2"], ["b1"], ["c1"]]):
        seen.append([p.name for p in paths])
        if paths[0].name == "a1":  # the next batch is fetched while this one is worked on
            deadline = time.monotonic() + 5
            while "fetch b1" not in log.events and time.monotonic() < deadline:
                time.sleep(0.001)
        with log.lock:
            assert f"remove {paths[0].name}" not in log.events  # still there while in use
    assert seen == [["a1", "a2"], ["b1"], ["c1"]]
    assert sorted(e for e in log.events if e.startswith("remove")) == [
        "remove a1",
        "remove b1",
        "remove c1",
    ]
    assert log.events.index("fetch b1") < log.events.index("remove a1")  # they overlapped


def test_a_caller_that_stops_early_leaves_no_fetched_batch_behind() -> None:
    log = FetchLog()
    batches = ChannelTree(log).local_batches([["a"], ["b"], ["c"]])  # type: ignore[arg-type]
    next(batches)
    batches.close()
    fetched = {e.split()[1] for e in log.events if e.startswith("fetch")}
    removed = {e.split()[1] for e in log.events if e.startswith("remove")}
    assert fetched == removed and "a" in fetched and "c" not in fetched


def test_no_batches_fetch_nothing(tmp_path: Path) -> None:
    assert list(local_tree(tmp_path).local_batches([])) == []


@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(min_value=1, max_value=50))
def test_a_stream_of_chunks_reads_back_as_the_same_bytes_in_any_read_size(
    chunks: list[bytes], size: int
) -> None:
    reader = io.BufferedReader(ChunkReader(iter(chunks)), buffer_size=7)
    parts: list[Any] = []
    while part := reader.read(size):
        parts.append(part)
    assert b"".join(parts) == b"".join(chunks)
    assert reader.read() == b""
