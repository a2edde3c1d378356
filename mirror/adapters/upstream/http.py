"""An upstream over http(s) with httpx: conditional repodata, downloads, classified failures."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from mirror import __version__
from mirror.adapters.upstream.direct import DirectPool, DirectResponse, Target, Timeouts
from mirror.adapters.upstream.pacing import HostPacer, HostPolicy, Slot
from mirror.adapters.upstream.retry import Retrier
from mirror.adapters.upstream.transport import SharedTls, plain_transport, transports
from mirror.adapters.upstream.values import (
    Downloaded,
    Fetched,
    FetchedBytes,
    NotModified,
    OnBytes,
    Validators,
)
from mirror.adapters.upstream.verified import (
    CHUNK_BYTES,
    decompress_zst,
    has_zstd_checksum,
    parse_checked,
    write_verified,
)
from mirror.config.model import TransferSettings
from mirror.core.plan import WantedFile
from mirror.core.retry_after import retry_after_s
from mirror.core.secrets import Redactor, redact_url
from mirror.errors import (
    UpstreamError,
)

REPODATA_JSON = "repodata.json"
REPODATA_ZST = "repodata.json.zst"
_CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class PacedClient(httpx.Client):
    """The process's httpx client with the per-host request slots every upstream shares, and
    (when given) the lean path for package GETs."""

    def __init__(self, pacer: HostPacer, direct: DirectPool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pacer = pacer
        self.direct = direct

    def close(self) -> None:
        if self.direct is not None:
            self.direct.close()
        super().close()


def make_http_client(max_connections_per_host: int) -> httpx.Client:
    """The one httpx client of a process: User-Agent, proxy and CA-bundle environment honoured.

    httpx reads HTTP(S)_PROXY / NO_PROXY itself; for the CA bundle we also honour the variables
    requests and curl users already set on their machines. How many connections a host gets is
    the pacer's business (its slots are never more than the host's cap); httpx only keeps that
    many alive for reuse, for the upstream's host and one other (where shards may live).
    """
    cafile = next((os.environ[name] for name in _CA_ENV if os.environ.get(name)), None)
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=2 * max_connections_per_host
    )
    tls = SharedTls(cafile)  # one TLS context for both paths, built when https first needs it
    mounts = transports(tls, limits)
    user_agent = f"mirror/{__version__} httpx/{httpx.__version__}"
    proxied = frozenset(k for k in urllib.request.getproxies() if k in ("http", "https", "all"))
    return PacedClient(
        HostPacer(),
        DirectPool(user_agent, tls, proxied),
        headers={"User-Agent": user_agent},
        follow_redirects=True,
        trust_env=True,
        # behind a proxy from the environment httpx builds its own transports: give them the
        # shared context; else the mounts serve every URL and the default transport none
        verify=tls() if mounts is None else True,
        limits=limits,
        mounts=mounts,
        transport=plain_transport() if mounts else None,
    )


class HttpUpstream:
    def __init__(
        self,
        url: str,
        http: httpx.Client,
        settings: TransferSettings,
        bearer_token: str | None,
        redactor: Redactor,
        retry: Retrier,
        max_repodata_bytes: int,
    ) -> None:
        self._base = url.rstrip("/")
        self._http = http
        self._timeout = httpx.Timeout(
            settings.read_timeout_s, connect=settings.connect_timeout_s, pool=None
        )
        self._auth = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        self._redact = redactor
        self._retry = retry
        self._max_repodata = max_repodata_bytes
        self.shown_url = redact_url(self._base)
        self._pacer = http.pacer if isinstance(http, PacedClient) else None
        self._direct = http.direct if isinstance(http, PacedClient) else None
        self._direct_base = Target.of(self._base)
        self._timeouts = Timeouts(settings.connect_timeout_s, settings.read_timeout_s)
        self._policy = HostPolicy(settings.workers, settings.max_connections_per_host)
        self._max_retry_after_s = settings.max_retry_after_s
        self._host = host_of(self._base)

    def transfer_threads(self) -> int:
        """As many download threads as the host may have requests in flight now: its adaptive
        limit (a pool adds threads as it grows), `workers` until its first request ends."""
        limit = None if self._pacer is None else self._pacer.limit(self._host)
        return self._policy.start if limit is None else min(limit, self._policy.cap)

    def fetch_repodata(
        self, subdir: str, previous: Validators | None, skip_zst: bool
    ) -> NotModified | Fetched:
        if not skip_zst:
            try:
                result, _ = self._retry.run(
                    lambda: self._get_confirmed(subdir, REPODATA_ZST, previous)
                )
                return result
            except UpstreamError as exc:
                if exc.reason != "not_found":
                    raise
        result, _ = self._retry.run(lambda: self._get_confirmed(subdir, REPODATA_JSON, previous))
        if isinstance(result, Fetched) and not skip_zst:
            return dataclasses.replace(result, zst_missing=True)
        return result

    def _get_confirmed(
        self, subdir: str, variant: str, previous: Validators | None
    ) -> NotModified | Fetched:
        """Plain http has no integrity check, and a repodata.json(.zst) damaged in transit can
        still parse (zstd frames need not carry a checksum): records with damaged fields that no
        file check covers (md5, depends) would be published. So over plain http a body not
        protected by a zstd checksum must be served identically twice."""
        first, digest, checksummed = self._get_repodata(subdir, variant, previous)
        if not isinstance(first, Fetched) or checksummed or not self._base.startswith("http:"):
            return first
        url = f"{self._base}/{subdir}/{variant}"
        with self._stream(url, dict(self._auth)) as response:
            again = hashlib.sha256()
            for chunk in response.iter_bytes(CHUNK_BYTES):
                again.update(chunk)
        if again.digest() != digest:
            raise UpstreamError(
                f"{self._shown(url)}: two transfers over plain http differ (damaged in transit, "
                "or upstream changed meanwhile); fetching again",
                reason="unstable_repodata",
            )
        return first

    def _get_repodata(
        self, subdir: str, variant: str, previous: Validators | None
    ) -> tuple[NotModified | Fetched, bytes, bool]:
        """The response, the sha256 of the bytes transferred, and whether a zstd checksum
        vouched for them."""
        url = f"{self._base}/{subdir}/{variant}"
        headers = dict(self._auth)
        if previous is not None and previous.variant == variant:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        with self._stream(url, headers) as response:
            validators = Validators(
                variant, response.headers.get("ETag"), response.headers.get("Last-Modified")
            )
            if response.status_code == 304:
                return NotModified(previous or validators), b"", False
            body = bytearray()
            for chunk in response.iter_bytes(CHUNK_BYTES):
                body += chunk
                if len(body) > self._max_repodata:
                    raise UpstreamError(
                        f"{self._shown(url)}: larger than max_repodata_size "
                        f"({self._max_repodata} bytes); raise it if this upstream is that big",
                        reason="too_large",
                        retryable=False,
                    )
        digest = hashlib.sha256(body).digest()
        transferred = len(body)
        checksummed = False
        if variant == REPODATA_ZST:
            checksummed = has_zstd_checksum(body)
            body = decompress_zst(body, self._max_repodata, self._shown(url))
        parsed = parse_checked(body, self._shown(url))
        fetched = Fetched(parsed, validators, zst_missing=False, transferred_bytes=transferred)
        return fetched, digest, checksummed

    def download(self, subdir: str, want: WantedFile, dest: Path, on_bytes: OnBytes) -> Downloaded:
        url = f"{self._base}/{subdir}/{want.filename}"
        target = self._direct_base.child(f"/{subdir}/{want.filename}")
        shown = self._shown(url)

        def attempt() -> Downloaded:
            with self._body(url, target, shown, dict(self._auth)) as chunks:
                return write_verified(chunks, dest, want, on_bytes, self._retry.stop, shown)

        result, tries = self._retry.run(attempt)
        return Downloaded(result.size, result.sha256, result.md5, tries)

    def file_url(self, subdir: str, name: str) -> str:
        return f"{self._base}/{subdir}/{name}"

    def fetch_small(
        self, url: str, previous: Validators | None, max_bytes: int, *, hash_checked: bool = False
    ) -> NotModified | FetchedBytes:
        """A small file by URL (maybe on another host: the token goes only to the upstream's
        own host). Over plain http, bytes no hash or zstd checksum vouches for must arrive
        identically twice, as for repodata."""
        result, _ = self._retry.run(lambda: self._get_small(url, previous, max_bytes))
        if (
            isinstance(result, FetchedBytes)
            and not hash_checked
            and urlsplit(url).scheme == "http"
            and not has_zstd_checksum(result.data)
        ):
            again, _ = self._retry.run(lambda: self._get_small(url, None, max_bytes))
            if not isinstance(again, FetchedBytes) or again.data != result.data:
                raise UpstreamError(
                    f"{self._shown(url)}: two transfers over plain http differ (damaged in "
                    "transit, or upstream changed meanwhile); fetching again",
                    reason="unstable_repodata",
                )
        return result

    def _get_small(
        self, url: str, previous: Validators | None, max_bytes: int
    ) -> NotModified | FetchedBytes:
        own = urlsplit(self._base)
        there = urlsplit(url)
        same_origin = (own.scheme, own.netloc) == (there.scheme, there.netloc)
        headers = dict(self._auth) if same_origin else {}
        if previous is not None:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        variant = previous.variant if previous else url.rsplit("/", 1)[-1]
        with self._stream(url, headers) as response:
            validators = Validators(
                variant, response.headers.get("ETag"), response.headers.get("Last-Modified")
            )
            if response.status_code == 304:
                return NotModified(previous or validators)
            body = bytearray()
            for chunk in response.iter_bytes(CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    raise UpstreamError(
                        f"{self._shown(url)}: larger than {max_bytes:,} bytes; refused",
                        reason="too_large",
                        retryable=False,
                    )
        return FetchedBytes(bytes(body), validators)

    @contextlib.contextmanager
    def _body(
        self, url: str, target: Target, shown: str, headers: dict[str, str]
    ) -> Iterator[Iterator[bytes]]:
        """A package file's body: over the lean path when it serves the URL, else httpx."""
        if self._direct is not None and self._direct.serves(target):
            with self._direct_get(target, shown, headers) as response:
                if response.plain:
                    yield response.chunks(CHUNK_BYTES)
                    return
                self._direct.avoid(target)  # a redirect or an encoded body: httpx knows those
        with self._stream(url, headers) as streamed:
            yield streamed.iter_bytes(CHUNK_BYTES)

    @contextlib.contextmanager
    def _direct_get(
        self, target: Target, shown: str, headers: dict[str, str]
    ) -> Iterator[DirectResponse]:
        """As _stream(), over the lean path: a slot of the host, its outcome judged."""
        assert self._direct is not None
        with self._host_slot(self._host) as slot:
            try:
                with self._direct.get(target, headers, self._timeouts, shown, self._redact) as got:
                    if got.status in (429, 503):
                        slot.congested(self._retry_after(got.header("Retry-After")))
                    if got.plain:
                        raise_for_code(got.status, shown, slot.pause_s)
                    yield got
                slot.done()
            except UpstreamError as exc:
                if exc.reason == "timeout":
                    slot.congested()
                raise

    @contextlib.contextmanager
    def _stream(self, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """A streamed GET whose failures arrive as classified, redacted UpstreamErrors."""
        shown = self._shown(url)
        with self._slot(url) as slot:
            try:
                with self._http.stream(
                    "GET", url, headers=headers, timeout=self._timeout
                ) as response:
                    self._judge(slot, response)
                    raise_for_status(response, shown, slot.pause_s)
                    yield response
                slot.done()
            except httpx.TimeoutException as exc:
                slot.congested()
                raise UpstreamError(
                    f"{shown}: timed out ({type(exc).__name__})", reason="timeout"
                ) from None
            except httpx.ConnectError as exc:
                raise UpstreamError(
                    f"{shown}: cannot connect ({self._redact(str(exc))})", reason="connect"
                ) from None
            except httpx.TransportError as exc:
                text = self._redact(str(exc))
                reason = "truncated" if "incomplete" in text or "expected" in text else "connection"
                raise UpstreamError(
                    f"{shown}: connection failed mid-transfer ({text})", reason=reason
                ) from None

    def _slot(self, url: str) -> contextlib.AbstractContextManager[Slot]:
        """A slot of the URL's host (scheme, name and port: never credentials)."""
        return self._host_slot(host_of(url))

    def _host_slot(self, host: str) -> contextlib.AbstractContextManager[Slot]:
        if self._pacer is None:
            return contextlib.nullcontext(Slot(host, time.monotonic()))
        return self._pacer.slot(host, self._policy, self._retry.stop)

    def _judge(self, slot: Slot, response: httpx.Response) -> None:
        """429 and 503 are the upstream pushing back; Retry-After says for how long."""
        if response.status_code in (429, 503):
            slot.congested(self._retry_after(response.headers.get("Retry-After")))

    def _retry_after(self, header: str | None) -> float | None:
        return retry_after_s(header, time.time(), self._max_retry_after_s)

    def _shown(self, url: str) -> str:
        return self._redact(redact_url(url))


def host_of(url: str) -> str:
    """What the pacer keys a host by: scheme, name and port (never credentials)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def raise_for_status(response: httpx.Response, shown: str, wait_s: float | None = None) -> None:
    raise_for_code(response.status_code, shown, wait_s)


def raise_for_code(status: int, shown: str, wait_s: float | None = None) -> None:
    """The classified UpstreamError of an HTTP status other than 200 and 304."""
    if status in (200, 304):
        return
    if status in (404, 410):
        raise UpstreamError(
            f"{shown}: not found upstream (HTTP {status})", reason="not_found", retryable=False
        )
    if status in (401, 403):
        raise UpstreamError(
            f"{shown}: access denied (HTTP {status}); check the channel token",
            reason="auth",
            retryable=False,
        )
    if status >= 500 or status == 429:
        asked = "" if wait_s is None else f"; it asks to wait {wait_s:.0f} s (Retry-After)"
        raise UpstreamError(
            f"{shown}: upstream error (HTTP {status}{asked})", reason=f"http_{status}"
        )
    raise UpstreamError(
        f"{shown}: unexpected HTTP {status}", reason=f"http_{status}", retryable=False
    )
