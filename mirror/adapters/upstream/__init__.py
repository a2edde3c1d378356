"""An upstream channel over http(s) (httpx) or file://: conditional repodata, verified downloads.

Every byte of a package is hashed while it streams into a temp file and checked against the
upstream record before the caller may install it. Failures are retried with exponential
backoff and jitter; what finally fails is an UpstreamError with a short `reason` (for metrics)
and a message that names the file but never a token.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from mirror.adapters.upstream.file import FileUpstream
from mirror.adapters.upstream.http import HttpUpstream, make_http_client
from mirror.adapters.upstream.retry import OnRetry, Retrier
from mirror.adapters.upstream.values import (
    Downloaded,
    Fetched,
    FetchedBytes,
    NotModified,
    OnBytes,
    Upstream,
    Validators,
)
from mirror.adapters.upstream.verified import decompress_zst, parse_checked, write_verified
from mirror.config.model import TransferSettings
from mirror.core.secrets import Redactor


def open_upstream(
    url: str,
    *,
    http: httpx.Client | None,
    settings: TransferSettings,
    bearer_token: str | None,
    redactor: Redactor,
    stop: threading.Event,
    max_repodata_bytes: int,
    on_retry: OnRetry,
) -> Upstream:
    retry = Retrier(settings, stop, on_retry)
    if urlsplit(url).scheme == "file":
        return FileUpstream(Path(unquote(urlsplit(url).path)), retry, max_repodata_bytes)
    if http is None:
        raise ValueError("an http(s) upstream needs an http client")
    return HttpUpstream(url, http, settings, bearer_token, redactor, retry, max_repodata_bytes)


__all__ = [
    "Downloaded",
    "Fetched",
    "FetchedBytes",
    "FileUpstream",
    "HttpUpstream",
    "NotModified",
    "OnBytes",
    "OnRetry",
    "Retrier",
    "Upstream",
    "Validators",
    "decompress_zst",
    "make_http_client",
    "open_upstream",
    "parse_checked",
    "write_verified",
]
