"""Logging for every command: one handler on stderr, secrets masked in every line."""

from __future__ import annotations

import logging
import os
import sys


class RedactingFormatter(logging.Formatter):
    """Masks known secrets in every log line, tracebacks included."""

    def __init__(self, fmt: str) -> None:
        from mirror.core.secrets import Redactor

        super().__init__(fmt)
        self.redact = Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def __call__(self, text: str) -> str:
        return self.redact(text)


def setup_logging(level: str) -> RedactingFormatter:
    # journald stamps each line itself; elsewhere a timestamp helps (cron mail, files)
    fmt = (
        "%(levelname)s %(message)s"
        if os.environ.get("JOURNAL_STREAM")
        else ("%(asctime)s %(levelname)s %(message)s")
    )
    formatter = RedactingFormatter(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, RedactingFormatter)]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request URL at INFO
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job otherwise
    return formatter
