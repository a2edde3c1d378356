"""The catalog's SQLite connection: opening and migrating it, transactions, failures explained."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from mirror.adapters.catalog.failures import explain_failure
from mirror.adapters.catalog.schema import FIRST_COMPATIBLE_VERSION, SCHEMA, SCHEMA_VERSION
from mirror.errors import CatalogError

BUSY_TIMEOUT_S = 30.0  # how long a write waits for another program holding the database


class Connection:
    """One thread's connection to the state database; the tables' mixins share it."""

    def __init__(self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._with_retry(self._set_up)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc

    def _set_up(self) -> None:
        # journal_mode=WAL needs a moment of exclusive access: the busy timeout does not apply,
        # hence the retry when several threads or processes open a new catalog at once
        self._db.execute("PRAGMA journal_mode=WAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: written by a newer mirror (schema {version}); upgrade mirror"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            if 0 < version < FIRST_COMPATIBLE_VERSION:
                # a pre-release layout: rebuilt from the tree (and upstream) by the next run
                self._drop_all()
            # later versions only add tables: CREATE ... IF NOT EXISTS migrates them in place
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _with_retry(self, action: Callable[[], None], attempts: int = 100) -> None:
        for attempt in range(attempts):
            try:
                action()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def _drop_all(self) -> None:
        tables = [
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            self._db.execute(f'DROP TABLE IF EXISTS "{table}"')

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:  # SQLite may have rolled back itself (disk full)
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._unusable(exc) from exc
            raise

    def _unusable(self, exc: sqlite3.DatabaseError) -> CatalogError:
        return explain_failure(self.path, exc, self.busy_timeout_s)
