"""Retrying an upstream request with exponential backoff and jitter, until a stop is asked."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

from mirror.config.model import TransferSettings
from mirror.errors import (
    Interrupted,
    UpstreamError,
)

MAX_BACKOFF_S = 60.0
T = TypeVar("T")
OnRetry = Callable[[str], None]


class Retrier:
    """Runs an attempt until it succeeds, fails for good, or the retries are used up."""

    def __init__(
        self, settings: TransferSettings, stop: threading.Event, on_retry: OnRetry
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.on_retry = on_retry

    def run(self, attempt: Callable[[], T]) -> tuple[T, int]:
        tries = 0
        while True:
            if self.stop.is_set():
                raise Interrupted("stop requested")
            tries += 1
            try:
                return attempt(), tries
            except UpstreamError as exc:
                if not exc.retryable or tries > self.settings.retries:
                    raise
                self.on_retry(exc.reason)
                delay = min(MAX_BACKOFF_S, self.settings.retry_backoff_s * 2 ** (tries - 1))
                if self.stop.wait(delay * random.uniform(0.5, 1.5)):
                    raise Interrupted("stop requested") from exc
