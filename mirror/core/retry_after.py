"""Reading an HTTP Retry-After header (RFC 9110 10.2.3): delta-seconds or an HTTP-date."""

from __future__ import annotations

import datetime
import email.utils
import re

_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def retry_after_s(value: str | None, now_epoch_s: float, bound_s: float) -> float | None:
    """How long the server asks us to wait, at most `bound_s`; None when there is no usable
    header. A date in the past means "now" (0). `now_epoch_s` is the wall clock (a date is
    absolute): the caller passes it in."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):  # RFC 9110 says whole seconds; a fraction does no harm
        return min(float(text), bound_s)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's UTC of unknown origin
        when = when.replace(tzinfo=datetime.UTC)
    try:
        wait = when.timestamp() - now_epoch_s
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(0.0, wait), bound_s)
