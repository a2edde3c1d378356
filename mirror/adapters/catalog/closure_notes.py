"""What the last dependency closure of each channel said (the `closure_notes` table)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mirror.adapters.catalog.connection import Connection


class ClosureNoteKind(StrEnum):
    PROBLEM = "problem"  # our rules made a dependency unmeetable: the sync fails
    UNAVAILABLE = "unavailable"  # no candidate upstream for an include spec on a platform


@dataclass(frozen=True)
class ClosureNote:
    kind: ClosureNoteKind
    message: str
    platform: str | None = None  # None: about the channel's whole closure
    spec: str | None = None  # the include spec an UNAVAILABLE note is about


class ClosureNotes(Connection):
    """Replaced as a whole each time a channel's closure is computed, for `mirror status`."""

    def set_closure_notes(self, channel: str, notes: Iterable[ClosureNote]) -> None:
        now = time.time()
        with self.transaction():
            self._db.execute("DELETE FROM closure_notes WHERE channel = ?", (channel,))
            self._db.executemany(
                "INSERT INTO closure_notes VALUES (?, ?, ?, ?, ?, ?)",
                ((channel, n.platform, str(n.kind), n.spec, n.message, now) for n in notes),
            )

    def closure_notes(self, channel: str) -> list[ClosureNote]:
        rows = self._db.execute(
            "SELECT kind, message, platform, spec FROM closure_notes WHERE channel = ? "
            "ORDER BY rowid",
            (channel,),
        )
        return [
            ClosureNote(ClosureNoteKind(kind), message, platform, spec)
            for kind, message, platform, spec in rows
        ]
