"""An upstream channel over http(s) (httpx) or file://: conditional repodata, verified downloads.

Every byte of a package is hashed while it streams into a temp file and checked against the
upstream record before the caller may install it. Failures are retried with exponential
backoff and jitter; what finally fails is an UpstreamError with a short `reason` (for metrics)
and a message that names the file but never a token.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
import zstandard

from mirror import __version__
from mirror.config.model import TransferSettings
from mirror.core.plan import WantedFile
from mirror.core.records import UpstreamRepodata, parse_repodata
from mirror.core.secrets import Redactor, redact_url
from mirror.errors import (
    Interrupted,
    RepodataError,
    StoreError,
    UpstreamError,
    VerificationError,
)

REPODATA_JSON = "repodata.json"
REPODATA_ZST = "repodata.json.zst"
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_S = 60.0
_CA_ENV = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

T = TypeVar("T")
OnBytes = Callable[[int], None]
OnRetry = Callable[[str], None]


@dataclass(frozen=True)
class Validators:
    """Conditional-request validators of one repodata variant (file name)."""

    variant: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class NotModified:
    validators: Validators


@dataclass(frozen=True)
class Fetched:
    repodata: UpstreamRepodata  # split into raw records (zero-copy slices of the body)
    validators: Validators
    zst_missing: bool  # the .zst was asked for and upstream does not have it


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str
    md5: str
    attempts: int


class Upstream(Protocol):
    shown_url: str

    def fetch_repodata(
        self, subdir: str, previous: Validators | None, skip_zst: bool
    ) -> NotModified | Fetched: ...

    def download(
        self, subdir: str, want: WantedFile, dest: Path, on_bytes: OnBytes
    ) -> Downloaded: ...


def make_http_client(max_connections: int) -> httpx.Client:
    """The one httpx client of a process: User-Agent, proxy and CA-bundle environment honoured.

    httpx reads HTTP(S)_PROXY / NO_PROXY itself; for the CA bundle we also honour the variables
    requests and curl users already set on their machines.
    """
    verify: ssl.SSLContext | bool = True
    for name in _CA_ENV:
        cafile = os.environ.get(name)
        if cafile:
            verify = ssl.create_default_context(cafile=cafile)
            break
    return httpx.Client(
        headers={"User-Agent": f"mirror/{__version__} httpx/{httpx.__version__}"},
        follow_redirects=True,
        trust_env=True,
        verify=verify,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )


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
    retry = _Retrier(settings, stop, on_retry)
    if urlsplit(url).scheme == "file":
        return FileUpstream(Path(unquote(urlsplit(url).path)), retry, max_repodata_bytes)
    if http is None:
        raise ValueError("an http(s) upstream needs an http client")
    return HttpUpstream(url, http, settings, bearer_token, redactor, retry, max_repodata_bytes)


class _Retrier:
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


class HttpUpstream:
    def __init__(
        self,
        url: str,
        http: httpx.Client,
        settings: TransferSettings,
        bearer_token: str | None,
        redactor: Redactor,
        retry: _Retrier,
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
            return Fetched(result.repodata, result.validators, zst_missing=True)
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
        checksummed = False
        if variant == REPODATA_ZST:
            checksummed = _has_zstd_checksum(body)
            body = decompress_zst(body, self._max_repodata, self._shown(url))
        parsed = parse_checked(body, self._shown(url))
        return Fetched(parsed, validators, zst_missing=False), digest, checksummed

    def download(self, subdir: str, want: WantedFile, dest: Path, on_bytes: OnBytes) -> Downloaded:
        url = f"{self._base}/{subdir}/{want.filename}"

        def attempt() -> Downloaded:
            with self._stream(url, dict(self._auth)) as response:
                return write_verified(
                    response.iter_bytes(CHUNK_BYTES),
                    dest,
                    want,
                    on_bytes,
                    self._retry.stop,
                    self._shown(url),
                )

        result, tries = self._retry.run(attempt)
        return Downloaded(result.size, result.sha256, result.md5, tries)

    @contextlib.contextmanager
    def _stream(self, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """A streamed GET whose failures arrive as classified, redacted UpstreamErrors."""
        shown = self._shown(url)
        try:
            with self._http.stream("GET", url, headers=headers, timeout=self._timeout) as response:
                _raise_for_status(response, shown)
                yield response
        except httpx.TimeoutException as exc:
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

    def _shown(self, url: str) -> str:
        return self._redact(redact_url(url))


def _raise_for_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
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
        raise UpstreamError(f"{shown}: upstream error (HTTP {status})", reason=f"http_{status}")
    raise UpstreamError(
        f"{shown}: unexpected HTTP {status}", reason=f"http_{status}", retryable=False
    )


class FileUpstream:
    """A channel on a local disk or share (file://). Validators are the file's size and mtime."""

    def __init__(self, root: Path, retry: _Retrier, max_repodata_bytes: int) -> None:
        self._root = root
        self._retry = retry
        self._max_repodata = max_repodata_bytes
        self.shown_url = root.as_uri()

    def fetch_repodata(
        self, subdir: str, previous: Validators | None, skip_zst: bool
    ) -> NotModified | Fetched:
        # Reading the plain JSON avoids a decompression when both exist on a local disk.
        for variant in (REPODATA_JSON, REPODATA_ZST):
            path = self._root / subdir / variant
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UpstreamError(f"{path}: cannot read: {exc.strerror}", reason="io") from exc
            validators = Validators(variant, f'"{st.st_size}-{st.st_mtime_ns}"', None)
            if previous == validators:
                return NotModified(validators)
            if st.st_size > self._max_repodata:
                raise UpstreamError(
                    f"{path}: larger than max_repodata_size", reason="too_large", retryable=False
                )
            body: bytes | bytearray = path.read_bytes()
            if variant == REPODATA_ZST:
                body = decompress_zst(body, self._max_repodata, str(path))
            return Fetched(parse_checked(body, str(path)), validators, zst_missing=False)
        raise UpstreamError(
            f"{self._root / subdir}: no repodata.json there; is this a conda channel with that "
            "subdir?",
            reason="not_found",
            retryable=False,
        )

    def download(self, subdir: str, want: WantedFile, dest: Path, on_bytes: OnBytes) -> Downloaded:
        source = self._root / subdir / want.filename

        def attempt() -> Downloaded:
            try:
                handle = open(source, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                raise UpstreamError(
                    f"{source}: not found upstream", reason="not_found", retryable=False
                ) from None
            except OSError as exc:
                raise UpstreamError(f"{source}: cannot read: {exc.strerror}", reason="io") from None
            with handle:
                chunks = _read_chunks(handle, source)
                return write_verified(chunks, dest, want, on_bytes, self._retry.stop, str(source))

        result, tries = self._retry.run(attempt)
        return Downloaded(result.size, result.sha256, result.md5, tries)


def _read_chunks(handle: BinaryIO, source: Path) -> Iterator[bytes]:
    """A failing read is the upstream's fault; write_verified takes any OSError for ours."""
    try:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
    except OSError as exc:
        raise UpstreamError(f"{source}: cannot read: {exc.strerror}", reason="io") from None


def write_verified(
    chunks: Iterator[bytes],
    dest: Path,
    want: WantedFile,
    on_bytes: OnBytes,
    stop: threading.Event,
    shown: str,
) -> Downloaded:
    """Stream chunks into `dest` (a temp file), hashing as they pass; check size and hash.

    On any failure the temp file is removed, so nothing unverified is ever left behind.
    """
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(dest, "wb") as out:
            for chunk in chunks:
                if stop.is_set():
                    raise Interrupted("stop requested")
                size += len(chunk)
                if want.size is not None and size > want.size:
                    raise VerificationError(
                        f"{shown}: more bytes than the {want.size} its record promises",
                        reason="size_mismatch",
                    )
                sha256.update(chunk)
                md5.update(chunk)
                out.write(chunk)
                on_bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        got = Downloaded(size, sha256.hexdigest(), md5.hexdigest(), attempts=1)
        if want.size is not None and size != want.size:
            raise VerificationError(
                f"{shown}: got {size} bytes, its record says {want.size}", reason="truncated"
            )
        if not want.same_content(got.size, got.sha256, got.md5):
            expected = want.sha256 or want.md5
            raise VerificationError(
                f"{shown}: checksum mismatch (expected {expected}, got "
                f"{got.sha256 if want.sha256 else got.md5})",
                reason="hash_mismatch",
            )
        return got
    except OSError as exc:  # our side: the tree's disk is full, read-only, ...
        with contextlib.suppress(OSError):
            dest.unlink()
        raise StoreError.from_os_error(
            f"cannot write {want.filename} into {dest.parent}", exc
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise


def parse_checked(body: bytes | bytearray, shown: str) -> UpstreamRepodata:
    """Parse inside the attempt, so an error page served with 200 is retried like a 5xx."""
    try:
        return parse_repodata(body, source=shown)
    except RepodataError as exc:
        raise UpstreamError(str(exc), reason="invalid_repodata") from None


def _has_zstd_checksum(data: bytes | bytearray) -> bool:
    """Does the (first) zstd frame carry a content checksum, which decompression verifies?"""
    try:
        return bool(zstandard.get_frame_parameters(bytes(data[:18])).has_checksum)
    except zstandard.ZstdError:
        return False


def decompress_zst(data: bytes | bytearray, limit: int, shown: str) -> bytearray:
    """Decompress every zstd frame, with or without a content size in its header, up to `limit`."""
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        while chunk := reader.read(8 * CHUNK_BYTES):
            out += chunk
            if len(out) > limit:
                raise UpstreamError(
                    f"{shown}: decompresses past max_repodata_size",
                    reason="too_large",
                    retryable=False,
                )
    except zstandard.ZstdError as exc:
        raise UpstreamError(f"{shown}: corrupt zstd data ({exc})", reason="corrupt") from None
    return out
