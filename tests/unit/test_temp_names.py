"""Temp and staging names: unique across threads and processes, and recognisable as temp files
by everything that cleans them up (verify, a new run's clean-up, web servers hiding dotfiles)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mirror.adapters.store import TEMP_PREFIX, TEMP_SUFFIX, LocalStore
from mirror.adapters.store.local import temp_name


def _names(count: int) -> list[str]:
    return [temp_name() for _ in range(count)]


def test_temp_names_from_many_threads_never_collide() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(_names, [2000] * 8))
    names = [n for batch in batches for n in batch]
    assert len(set(names)) == len(names) == 16000
    assert all(n.startswith(TEMP_PREFIX) and n.endswith(TEMP_SUFFIX) for n in names)


def test_a_forked_process_names_other_temp_files_than_its_parent() -> None:
    mine = set(_names(100))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        theirs = pool.map(_names, [100, 100])
    assert not mine & set(theirs[0]) and not mine & set(theirs[1])
    assert not set(theirs[0]) & set(theirs[1])


def test_staging_paths_are_fresh_and_cleaned_up_as_leftovers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    paths = {store.staging_path("chan/noarch") for _ in range(500)}
    assert len(paths) == 500 and all(p.parent == tmp_path / "chan" / "noarch" for p in paths)
    for path in list(paths)[:3]:
        path.write_bytes(b"partial")
    assert store.clean_staging("chan/noarch") == 3
    assert not any((tmp_path / "chan" / "noarch").iterdir())
