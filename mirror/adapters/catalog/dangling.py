"""What the last sync found of records depending on names their channel lacks (`dangling`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from mirror.adapters.catalog.connection import Connection
from mirror.core.dangling import Dangling


class DanglingTable(Connection):
    """Per subdir, with the basis it was computed from (see sync/dangling.py)."""

    def set_dangling(self, channel: str, found: Mapping[str, Dangling], basis: str) -> None:
        now = time.time()
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO dangling VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        channel,
                        subdir,
                        d.records,
                        json.dumps(d.names),
                        json.dumps(d.examples),
                        d.missing_names,
                        basis,
                        now,
                    )
                    for subdir, d in found.items()
                ),
            )

    def dangling(self, channel: str) -> dict[str, tuple[Dangling, str]]:
        """subdir -> (what was found, its basis)."""
        rows = self._db.execute(
            "SELECT subdir, records, names, examples, missing, basis FROM dangling "
            "WHERE channel = ?",
            (channel,),
        )
        return {
            subdir: (
                Dangling(records, tuple(json.loads(names)), tuple(json.loads(ex)), missing),
                basis,
            )
            for subdir, records, names, ex, missing, basis in rows
        }
