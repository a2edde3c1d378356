"""The invariants every published tree must hold, whatever went into it; the end-to-end fuzzers
(tests/e2e/test_fuzz_*.py) check them after every example.

- `LogTrap`: no traceback and no "internal error" was logged, and no thread died of an exception;
- `Snapshot`: nothing outside the tree and the state directory changed (mtimes, modes, bytes,
  links), not even through a symlink;
- `check_tree`: the tree holds only directories and regular files, all inside it; every index
  a client may read (repodata.json, its .zst, current_repodata.json, the shards) parses with
  py-rattler as a whole and name by name, and every record in it names a file that is there
  with the record's size and sha256 (md5 when it has no sha256); no temp file and no unindexed
  package file is left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import zstandard

from mirror.adapters.lock import TREE_LOCK_NAME
from mirror.core.shards import SHARD_INDEX_NAME, SHARDS_DIR, read_shard, read_shard_index
from tests.support.rattler_reads import load_with_rattler, write_repodata

Snapshot = dict[str, tuple[Any, ...]]
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
INDEX_FILES = ("repodata.json", "current_repodata.json")


def snapshot(directory: Path, skip: Collection[Path] = ()) -> Snapshot:
    """Every entry under directory, never following symlinks: type, mode, mtime and content (a
    sha256 of regular files, the target of links), so any write, chmod or new entry shows."""
    skipped = {str(p) for p in skip}
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            if path in skipped:
                continue
            st = os.lstat(path)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
            # a folder's mtime moves when an entry comes or goes: the entry itself shows that,
            # and the tree and state folders come and go inside the folders that hold them
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            out[os.path.relpath(path, directory)] = (kind, mode, mtime, content)
    return out


def tree_snapshot(root: Path) -> Snapshot:
    """A tree's snapshot without its writer lock file, which every writing run touches."""
    return {k: v for k, v in snapshot(root).items() if k != TREE_LOCK_NAME}


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, by path."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# -- logs -------------------------------------------------------------------------------------


class LogTrap(logging.Handler):
    """Collects every log record (INFO and up) and every exception that ends a thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.thread_errors: list[str] = []
        self._old_level = logging.NOTSET
        self._old_hook = threading.excepthook

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogTrap:
        root = logging.getLogger()
        self._old_level = root.level
        root.setLevel(logging.INFO)
        root.addHandler(self)
        self._old_hook = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            self.thread_errors.append(f"{args.exc_type.__name__}: {args.exc_value}")

        threading.excepthook = hook
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._old_level)
        threading.excepthook = self._old_hook

    def lines(self, level: int = logging.INFO) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    @property
    def text(self) -> str:
        return "\n".join(self.lines())

    def failures(self) -> list[str]:
        """Log lines that betray a bug: a traceback, an internal error, a dead thread."""
        found = [f"thread died: {e}" for e in self.thread_errors]
        for record in self.records:
            message = record.getMessage()
            if record.exc_info or "Traceback" in message or "internal error" in message.lower():
                found.append(f"{record.levelname} {record.name}: {message[:2000]}")
        return found


# -- the tree -----------------------------------------------------------------------------------


@dataclass
class TreeFacts:
    """What check_tree found: published records per subdir (raw bytes by file name) and how
    many individual checks passed."""

    records: dict[str, dict[str, bytes]] = field(default_factory=dict)
    checks: int = 0


def check_tree(channel_dir: Path, scratch: Path) -> TreeFacts:
    """Every invariant of a published channel folder; AssertionError names the first broken."""
    facts = TreeFacts()
    root = channel_dir.resolve()
    for path in _walk(channel_dir):
        mode = path.lstat().st_mode
        assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), f"{path}: neither a file nor a folder"
        assert root in path.resolve().parents, f"{path} resolves outside the channel"
        facts.checks += 1
    for subdir_dir in sorted(p for p in channel_dir.iterdir() if p.is_dir()):
        if (subdir_dir / "repodata.json").exists():
            facts.records[subdir_dir.name] = check_subdir(subdir_dir, scratch, facts)
        else:
            loose = [p.name for p in subdir_dir.iterdir() if p.name.endswith(PACKAGE_SUFFIXES)]
            assert not loose, f"{subdir_dir}: package files {loose} but no repodata.json"
    return facts


def _walk(directory: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in [*dirnames, *filenames]:
            yield Path(dirpath, name)


def check_subdir(subdir_dir: Path, scratch: Path, facts: TreeFacts) -> dict[str, bytes]:
    """The invariants of one subdir folder; its published records (raw) by file name."""
    body = (subdir_dir / "repodata.json").read_bytes()
    records = records_of(body, subdir_dir / "repodata.json")
    _rattler_loads(subdir_dir / "repodata.json", records)
    for filename, raw in records.items():
        _check_file(subdir_dir, filename, json.loads(raw))
    facts.checks += 2 + 2 * len(records)
    zst = subdir_dir / "repodata.json.zst"
    if zst.exists():
        assert _unzstd(zst.read_bytes()) == body, f"{zst} does not hold repodata.json's bytes"
        facts.checks += 1
    for name in INDEX_FILES[1:]:
        if (subdir_dir / name).exists():
            current = records_of((subdir_dir / name).read_bytes(), subdir_dir / name)
            _rattler_loads(subdir_dir / name, current)
            for filename, raw in current.items():
                _check_file(subdir_dir, filename, json.loads(raw))
            facts.checks += 1 + len(current)
    facts.checks += _check_shards(subdir_dir, records, scratch)
    on_disk = {p.name for p in subdir_dir.iterdir() if p.name.endswith(PACKAGE_SUFFIXES)}
    unindexed = sorted(on_disk - set(records))
    assert not unindexed, f"{subdir_dir}: package files no index names: {unindexed}"
    temps = sorted(p.name for p in subdir_dir.iterdir() if p.name.endswith(".tmp"))
    assert not temps, f"{subdir_dir}: temp files left: {temps}"
    return records


class _Groups(msgspec.Struct):
    packages: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    conda: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict, name="packages.conda")


def records_of(body: bytes, shown: Path) -> dict[str, bytes]:
    """The records of a published index by file name: strict JSON, each in its right group."""
    groups = msgspec.json.decode(body, type=_Groups)
    for filename in groups.packages:
        assert filename.endswith(".tar.bz2"), f"{shown}: {filename!r} under 'packages'"
    for filename in groups.conda:
        assert filename.endswith(".conda"), f"{shown}: {filename!r} under 'packages.conda'"
    both = {**groups.packages, **groups.conda}
    assert len(both) == len(groups.packages) + len(groups.conda), f"{shown}: a name twice"
    return {filename: bytes(raw) for filename, raw in both.items()}


def _rattler_loads(path: Path, records: dict[str, bytes]) -> None:
    names = [json.loads(raw)["name"] for raw in records.values()]
    try:
        count = load_with_rattler(path, names)
    except Exception as exc:  # rattler's own exception types
        raise AssertionError(f"rattler cannot read {path}: {type(exc).__name__}: {exc}") from None
    assert count == len(records), f"rattler read {count} of the {len(records)} records of {path}"


def _check_file(subdir_dir: Path, filename: str, record: dict[str, Any]) -> None:
    path = subdir_dir / filename
    assert path.parent == subdir_dir and filename == path.name, f"{filename!r} is not a basename"
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise AssertionError(f"{path.name}: published but not in {subdir_dir}") from None
    assert stat.S_ISREG(st.st_mode), f"{path}: published but not a regular file"
    data = path.read_bytes()
    if record.get("size") is not None:
        assert len(data) == record["size"], (
            f"{path.name}: {len(data)} bytes, its record says {record['size']}"
        )
    if record.get("sha256"):
        assert hashlib.sha256(data).hexdigest() == record["sha256"], f"{path.name}: sha256"
    else:
        assert hashlib.md5(data).hexdigest() == record.get("md5"), f"{path.name}: md5"


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()


def _check_shards(subdir_dir: Path, records: dict[str, bytes], scratch: Path) -> int:
    """The shard index names only shards that exist and hash to their names; together they
    hold exactly repodata.json's records; and rattler reads every one of those records."""
    index_path = subdir_dir / SHARD_INDEX_NAME
    if not index_path.exists():
        return 0
    shard_map = read_shard_index(index_path.read_bytes())
    found: dict[str, dict[str, Any]] = {}
    for name, digest in shard_map.items():
        data = (subdir_dir / SHARDS_DIR / f"{digest}.msgpack.zst").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"shard of {name}: not its hash"
        shard = read_shard(data)
        for filename, record in shard.items():
            assert record.get("name") == name, f"shard of {name} holds {filename}"
        found.update(shard)
    expected = {filename: json.loads(raw) for filename, raw in records.items()}
    assert found == expected, (
        f"{subdir_dir.name}: shards and repodata.json disagree on "
        f"{sorted(set(found) ^ set(expected)) or 'record contents'}"
    )
    if found:
        entries = [
            (fn, "packages.conda" if fn.endswith(".conda") else "packages", json.dumps(r).encode())
            for fn, r in found.items()
        ]
        with tempfile.TemporaryDirectory(dir=scratch) as folder:
            path = write_repodata(Path(folder), subdir_dir.name, entries)
            _rattler_loads(path, {fn: raw for fn, _, raw in entries})
    return 1 + len(shard_map)
