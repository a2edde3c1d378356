"""The refusal every reader of this package raises, and how its messages show names and sizes."""

from __future__ import annotations

MiB = 1 << 20


class Refused(Exception):
    """Raised inside this package; read_package turns it into an ArchiveError naming the file."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def show(text: str) -> str:
    """A name fit for a log line: escaped (it may hold control characters), not too long."""
    shown = repr(text)
    return shown if len(shown) <= 120 else f"{shown[:100]}...{shown[-16:]}"


def bytes_text(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / MiB:.3g} MiB"
