"""Bounded retries with exponential backoff and full jitter, around obstore's own.

obstore retries each HTTP request on 5xx (SlowDown included), 429, resets and timeouts of
safe requests, part by part in a multipart upload. It deliberately does not retry a
conditional PUT or a bulk DELETE whose connection broke, nor a timed-out PUT, since it
cannot know whether the first try took effect; nor a 400 BadDigest (the body arrived
damaged). Those come back here: they are sent again, and the caller settles the ambiguity of
a conditional write (see Bucket.put_bytes). A failure obstore already retried is not retried
again, so `attempts` bounds both layers.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from obstore.exceptions import BaseError as ObstoreError

from mirror.adapters.objectstore.failures import Context, Diagnosis, diagnose, translate
from mirror.core.secrets import Redactor
from mirror.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` counts every try of one request (1: never retry)."""

    attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    request_timeout_s: float = 300.0  # one request, body included (a 16 MiB part on a slow link)
    connect_timeout_s: float = 10.0
    deadline_s: float = 300.0  # one request with all its retries

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError(
                "storage retries: attempts must be at least 1 and backoffs not negative"
            )

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Before retry number `retry` (1, 2, ...): uniform in [0, initial * 2^(retry-1)],
        capped ("full jitter"), so that many clients throttled at once spread out."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (retry - 1))
        return rng.uniform(0, ceiling)

    def obstore_config(self) -> dict[str, Any]:
        """The same bounds for obstore's per-request retries."""
        return {
            "max_retries": self.attempts - 1,
            "backoff": {
                "init_backoff": timedelta(seconds=self.initial_backoff_s),
                "max_backoff": timedelta(seconds=self.max_backoff_s),
                "base": 2,
            },
            "retry_timeout": timedelta(seconds=self.deadline_s),
        }


class Retrier:
    """Runs one store operation until it succeeds, fails for good, or attempts run out; the
    failure comes out as a MirrorError."""

    def __init__(
        self,
        policy: RetryPolicy,
        redact: Redactor,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._redact = redact
        self._sleep = sleep
        self._rng = rng or random.Random()

    def call(
        self,
        operation: Callable[[], T],
        ctx: Context,
        *,
        on_transient: Callable[[Diagnosis], None] | None = None,
    ) -> T:
        """`on_transient` hears of every try that failed in a way that may have taken effect
        all the same: one that got no answer or a 5xx, or one obstore itself repeated."""
        attempt = 1
        while True:
            try:
                return operation()
            except (ObstoreError, FileNotFoundError) as exc:
                diagnosis = diagnose(exc)
            if on_transient is not None and (diagnosis.transient or diagnosis.retries):
                on_transient(diagnosis)  # this try, or one obstore repeated, may have landed
            if not diagnosis.worth_retrying or attempt >= self.policy.attempts:
                tries = attempt + (diagnosis.retries or 0)
                raise translate(diagnosis, ctx, tries, self._redact) from None
            delay_s = self.policy.backoff_s(attempt, self._rng)
            log.debug(
                "%s %s: %s; retry %d of %d in %.2f s",
                ctx.action,
                ctx.url,
                _summary(diagnosis),
                attempt,
                self.policy.attempts - 1,
                delay_s,
            )
            self._sleep(delay_s)
            attempt += 1


def _summary(d: Diagnosis) -> str:
    if d.status is not None:
        return f"HTTP {d.status} {d.code or ''}".strip()
    return f"{(d.transport or 'connection').lower()} error"
