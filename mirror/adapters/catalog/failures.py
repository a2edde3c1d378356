"""What a user can do about a state database SQLite refuses: locked, full, read-only, damaged."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from mirror.errors import CatalogError

DISK_FULL_BYTES = 1 << 20  # less free than this under the database: an I/O error means full

REBUILD_HINT = (
    "move it aside and run the same command again: it is rebuilt from the tree (mirrored "
    "files are hashed against upstream's records, not downloaded again)"
)


def explain_failure(path: Path, exc: sqlite3.DatabaseError, busy_timeout_s: float) -> CatalogError:
    """What a user can do about a database that cannot be used; only a damaged one is to
    be moved aside, never one that is merely locked or on a full disk."""
    name, text = getattr(exc, "sqlite_errorname", ""), str(exc)
    where = f"{path}: the state database"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return CatalogError(
            f"{where} is locked by another program (waited {busy_timeout_s:g} s); "
            f"stop it (`fuser {path}` names it) and run again; nothing was changed"
        )
    # a full disk often shows as an I/O error: SQLite cannot grow its shared-memory file
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _disk_full(path)):
        return CatalogError(
            f"{where} cannot be written: no space left on device; the disk is full: free "
            "some space there and run again; what was published before is intact"
        )
    if name.startswith("SQLITE_READONLY"):
        return CatalogError(
            f"{where} cannot be written ({text}): the file system is read-only or the file "
            "is not ours; make it writable and run again"
        )
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return CatalogError(
            f"{where} cannot be used ({text}); check that its disk is writable and healthy "
            "and run again"
        )
    return CatalogError(f"{where} is damaged ({text}); {REBUILD_HINT}")


def _disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < DISK_FULL_BYTES
    except OSError:
        return False
