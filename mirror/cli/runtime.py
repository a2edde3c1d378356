"""What the commands share at run time: the progress display and stopping on signals."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mirror.progress import Progress

log = logging.getLogger("mirror")

# what each command module registers its subcommands on (generic only to the type checker)
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def terminal_progress() -> Progress:
    from mirror.progress import NoProgress, TerminalProgress

    return TerminalProgress(sys.stderr) if sys.stderr.isatty() else NoProgress()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set the stop event; the previous handlers come back afterwards."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning(
            "received %s: finishing files in flight, then stopping", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
