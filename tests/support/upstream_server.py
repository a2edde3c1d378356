"""A real loopback HTTP server that plays an upstream conda channel, with injectable faults.

The mirror talks HTTP to upstreams, so its tests need a real server: one that does
conditional requests like a CDN, enforces tokens and bearer auth like a private channel,
and misbehaves on demand (resets, truncation, corruption, slowness) so that retry and
verification paths run against genuine sockets rather than mocks.
"""

from __future__ import annotations

import contextlib
import email.utils
import fnmatch
import hashlib
import io
import json
import os
import random
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import zstandard

__all__ = ["FAULT_KINDS", "RequestRecord", "UpstreamServer"]

# What each kind does (to the next matching request):
#   "500", "503", "404": that status with a short text body.
#   "reset": close the connection with an RST (SO_LINGER 0) before any response byte.
#   "truncate": headers with the full Content-Length, half the body, then close.
#   "corrupt": full length, the middle byte XOR 0xFF; ETag stays that of the real file.
#   "wrong_length": Content-Length is half the real size (rounded down) and the whole
#       body is sent, then the connection is closed. A client sees a *successful*, short
#       body with no protocol error: only size/sha256 checks catch it.
#   "slow": wait slow_delay seconds (2 s by default), then answer normally.
#   "not_json": 200 with b"<html>oops" (text/html), whatever the path.
#   "empty_repodata": 200 with a valid repodata.json listing no packages (info.subdir from
#       the parent folder); zstd-compressed when the path ends in .zst.
# add_refusal(glob, status, retry_after) answers 429 or 503 with a Retry-After header (seconds
# or an HTTP-date, as given) to the next matching requests: an upstream pushing back. With
# shed_above=N the server refuses (503, Retry-After shed_retry_after if set) any request that
# arrives while N others are in flight: an upstream at capacity.
# Body faults (truncate, corrupt, wrong_length, not_json, empty_repodata) ignore
# conditional headers so that the fault is always delivered; on a missing file the
# server answers 404 as usual (the fault is still consumed and logged).
FAULT_KINDS = frozenset(
    {
        "500",
        "503",
        "404",
        "reset",
        "truncate",
        "corrupt",
        "wrong_length",
        "slow",
        "not_json",
        "empty_repodata",
    }
)
_BODY_FAULTS = frozenset({"truncate", "corrupt", "wrong_length", "not_json", "empty_repodata"})

_CONTENT_TYPES = {
    ".json": "application/json",
    ".zst": "application/zstd",
    ".bz2": "application/x-bzip2",
    ".conda": "application/octet-stream",
    ".msgpack": "application/msgpack",
}


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw and answered it.

    path is the raw request target (token included). match_path is what globs are
    matched against: URL-decoded, without query and without the /t/<token> prefix.
    status is 0 for a "reset" (no response was sent). body_bytes_sent is what the
    server sent (or was about to send) as body. headers has lower-cased names.
    arrived_s is the wall-clock time the request arrived; in_flight counts the requests the
    server was handling at that moment, this one included. client_port is the client's end
    of the connection (requests on one kept-alive connection share it).
    """

    method: str
    path: str
    match_path: str
    status: int
    body_bytes_sent: int
    headers: dict[str, str]
    fault: str | None = None
    arrived_s: float = 0.0
    in_flight: int = 0
    client_port: int = 0


_LogFn = Callable[[int, int, "str | None"], None]


@dataclass
class _Fault:
    glob: str
    kind: str
    remaining: int
    retry_after: str | None = None  # a refusal's Retry-After header


@dataclass
class _FaultRate:
    rate: float
    kinds: tuple[str, ...]
    glob: str
    rng: random.Random


@dataclass
class _State:
    """Everything the handler threads share, behind one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[RequestRecord] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    rate: _FaultRate | None = None
    etags: dict[str, tuple[tuple[int, int, int], str]] = field(default_factory=dict)
    connections: set[socket.socket] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that sets TCP_NODELAY, tracks connections and stays quiet."""

    daemon_threads = True
    block_on_close = True
    request_queue_size = 128

    def __init__(self, owner: UpstreamServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # Without this, headers and body go out in two segments and Nagle plus delayed
        # ACK make every keep-alive response about 40 ms late.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner._state.lock:
            self.owner._state.connections.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self.owner._state.lock:
            self.owner._state.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up are normal here; keep anything else for debugging.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            with self.owner._state.lock:
                self.owner._state.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    """Serves files under the owner's root, applying auth and faults."""

    protocol_version = "HTTP/1.1"
    server_version = "upstream-test"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request stderr noise."""

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        arrived_s, in_flight = time.time(), owner._arrive()
        try:
            self._serve_counted(head, arrived_s, in_flight)
        finally:
            owner._leave()

    def _serve_counted(self, head: bool, arrived_s: float, in_flight: int) -> None:
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw_path = urllib.parse.urlsplit(self.path).path
        match_path = urllib.parse.unquote(raw_path)

        def log(status: int, sent: int, fault: str | None = None) -> None:
            owner._log(
                RequestRecord(
                    self.command,
                    self.path,
                    match_path,
                    status,
                    sent,
                    headers,
                    fault,
                    arrived_s,
                    in_flight,
                    self.client_address[1],
                )
            )

        if owner.token is not None:
            prefix = f"/t/{owner.token}/"
            if not match_path.startswith(prefix):
                self._send(_text(403, "forbidden"), head, log)
                return
            match_path = match_path[len(prefix) - 1 :]
        if owner.bearer is not None and headers.get("authorization") != f"Bearer {owner.bearer}":
            response = _text(401, "unauthorized")
            response.headers["WWW-Authenticate"] = "Bearer"
            self._send(response, head, log)
            return

        if owner.latency_s:
            owner._stopping.wait(owner.latency_s)  # a remote upstream's round trip
        if owner.shed_above is not None and in_flight > owner.shed_above:
            self._send(_refusal(503, owner.shed_retry_after), head, log, "shed")
            return
        fault, retry_after = owner._take_fault(match_path)
        if fault in ("refuse_429", "refuse_503"):
            self._send(_refusal(int(fault[-3:]), retry_after), head, log, fault)
            return
        if fault == "reset":
            log(0, 0, fault)
            self._reset()
            return
        if fault == "slow":
            owner._stopping.wait(owner.slow_delay)
        if fault in ("500", "503", "404"):
            self._send(_text(int(fault), f"fault {fault}"), head, log, fault)
            return

        file = owner._resolve(match_path)
        if file is None:
            self._send(_text(404, "not found"), head, log, fault)
            return
        if fault in ("not_json", "empty_repodata"):
            body = b"<html>oops" if fault == "not_json" else _empty_repodata(match_path)
            ctype = "text/html" if fault == "not_json" else _content_type(match_path)
            response = _Response(
                200,
                {"Content-Type": ctype, "ETag": _etag(hashlib.sha256(body).hexdigest())},
                body,
            )
            self._send(response, head, log, fault)
            return

        served = owner._file_response(file, headers, conditional=fault not in _BODY_FAULTS)
        if served is None:
            self._send(_text(404, "not found"), head, log, fault)
        elif fault in ("truncate", "corrupt", "wrong_length") and served.status == 200:
            self._send_faulty(served, head, log, fault)
        else:
            self._send(served, head, log, fault)

    def _send(
        self,
        response: _Response,
        head: bool,
        log: _LogFn,
        fault: str | None = None,
    ) -> None:
        """Send a well-formed response; a 304 carries neither body nor Content-Length."""
        body = b"" if head or response.status == 304 else response.body
        log(response.status, len(body), fault)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_faulty(self, response: _Response, head: bool, log: _LogFn, fault: str) -> None:
        """Send one of the broken-body faults, then drop the connection if needed."""
        body = response.body
        length = len(body)
        if fault == "truncate":
            body = body[: len(body) // 2]
            self.close_connection = True
        elif fault == "corrupt" and body:
            mid = len(body) // 2
            body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1 :]
        elif fault == "wrong_length":
            length = len(body) // 2
            self.close_connection = True
        if head:
            body = b""
        log(response.status, len(body), fault)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _reset(self) -> None:
        """Abort the connection with an RST: SO_LINGER 0, then a real close of the fd."""
        self.close_connection = True
        conn = self.connection
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; close it first so that conn.close()
        # really closes the fd (a shutdown() would send a FIN instead).
        # wfile is a plain socket writer without a reference; swap in a sink so the
        # request loop's final flush has something to flush.
        self.rfile.close()
        conn.close()
        self.wfile = io.BytesIO()


def _text(status: int, message: str) -> _Response:
    return _Response(status, {"Content-Type": "text/plain"}, f"{message}\n".encode())


def _refusal(status: int, retry_after: str | None) -> _Response:
    response = _text(status, "busy, come back later")
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def _etag(sha256_hex: str) -> str:
    return f'"{sha256_hex}"'


def _content_type(path: str) -> str:
    return _CONTENT_TYPES.get(os.path.splitext(path)[1], "application/octet-stream")


def _empty_repodata(match_path: str) -> bytes:
    """A valid repodata.json with no packages, compressed if a .zst was asked for."""
    parts = [p for p in match_path.split("/") if p]
    subdir = parts[-2] if len(parts) >= 2 else "noarch"
    doc = {
        "info": {"subdir": subdir},
        "packages": {},
        "packages.conda": {},
        "removed": [],
        "repodata_version": 1,
    }
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    if match_path.endswith(".zst"):
        return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    return data


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match comparison is weak: W/ prefixes are ignored."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since.timestamp()


class UpstreamServer:
    """Loopback HTTP server for a channel directory; use as a context manager.

    Auth is checked before faults, so a fault is only consumed by a request that
    passed the token and bearer checks. Requests are logged just before their response
    is written, so a client holding a response always finds its record in `requests`.
    """

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        bearer: str | None = None,
        slow_delay: float = 2.0,
        latency_s: float = 0.0,
        shed_above: int | None = None,
        shed_retry_after: str | None = None,
        tls: tuple[Path, Path] | ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: (certificate, key) files in PEM, or a server context: serve https."""
        self.root = Path(root).resolve()
        self.tls = tls
        self.token = token
        self.bearer = bearer
        self.slow_delay = slow_delay
        self.latency_s = latency_s
        self.shed_above = shed_above
        self.shed_retry_after = shed_retry_after
        self._state = _State()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> UpstreamServer:
        """Bind a random loopback port and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        if self.tls is not None:  # the handshake happens as each connection is accepted
            context = self.tls
            if not isinstance(context, ssl.SSLContext):
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"upstream-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, drop open keep-alive connections and join the handler threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._state.lock:
            connections = list(self._state.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def drop_connections(self) -> None:
        """Close every kept-alive connection from the server's side (a FIN, as a server whose
        keep-alive timeout expired sends); the server itself keeps serving."""
        with self._state.lock:
            connections = list(self._state.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_port

    @property
    def base_url(self) -> str:
        """http(s)://127.0.0.1:PORT, without the token part."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The channel URL: base_url, plus /t/<token> when a token is set."""
        if self.token is not None:
            return f"{self.base_url}/t/{self.token}"
        return self.base_url

    # -- faults --------------------------------------------------------------------

    def add_fault(self, path_glob: str, kind: str, count: int = 1) -> None:
        """Apply kind to the next count requests whose match_path fnmatches path_glob."""
        _check_kind(kind)
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._state.lock:
            self._state.faults.append(_Fault(path_glob, kind, count))

    def add_refusal(
        self, path_glob: str, status: int, retry_after: str | None = None, count: int = 1
    ) -> None:
        """Answer the next count requests matching path_glob with status (429 or 503) and,
        when given, this Retry-After header (delta-seconds or an HTTP-date, sent as is)."""
        if status not in (429, 503):
            raise ValueError("a refusal is 429 or 503")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._state.lock:
            self._state.faults.append(_Fault(path_glob, f"refuse_{status}", count, retry_after))

    def set_fault_rate(
        self,
        rate: float,
        kinds: Sequence[str],
        seed: int,
        path_glob: str = "*",
    ) -> None:
        """Fault a seeded-random share of matching requests with a random kind from kinds.

        Queued add_fault faults take precedence. A rate of 0 turns random faults off.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if not kinds:
            raise ValueError("kinds must not be empty")
        for kind in kinds:
            _check_kind(kind)
        with self._state.lock:
            self._state.rate = (
                _FaultRate(rate, tuple(kinds), path_glob, random.Random(seed)) if rate else None
            )

    def clear_faults(self) -> None:
        """Drop queued faults and the random fault rate."""
        with self._state.lock:
            self._state.faults.clear()
            self._state.rate = None

    def _take_fault(self, match_path: str) -> tuple[str | None, str | None]:
        """The fault kind for this request, and a refusal's Retry-After."""
        with self._state.lock:
            for fault in self._state.faults:
                if fnmatch.fnmatchcase(match_path, fault.glob):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._state.faults.remove(fault)
                    return fault.kind, fault.retry_after
            rate = self._state.rate
            if (
                rate is not None
                and fnmatch.fnmatchcase(match_path, rate.glob)
                and rate.rng.random() < rate.rate
            ):
                return rate.rng.choice(rate.kinds), None
        return None, None

    def _arrive(self) -> int:
        with self._state.lock:
            self._state.in_flight += 1
            self._state.peak_in_flight = max(self._state.peak_in_flight, self._state.in_flight)
            return self._state.in_flight

    def _leave(self) -> None:
        with self._state.lock:
            self._state.in_flight -= 1

    # -- request log ---------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._state.lock:
            return list(self._state.log)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected handler exceptions (client disconnects are not counted)."""
        with self._state.lock:
            return list(self._state.errors)

    @property
    def peak_in_flight(self) -> int:
        """The most requests the server handled at once since start or clear_log."""
        with self._state.lock:
            return self._state.peak_in_flight

    def clear_log(self) -> None:
        """Forget logged requests (and the peak in flight), so a test counts what follows."""
        with self._state.lock:
            self._state.log.clear()
            self._state.peak_in_flight = self._state.in_flight

    def count(self, path_glob: str, status: int | None = None) -> int:
        """How many logged requests have a match_path matching path_glob (and status)."""
        with self._state.lock:
            return sum(
                1
                for r in self._state.log
                if fnmatch.fnmatchcase(r.match_path, path_glob)
                and (status is None or r.status == status)
            )

    def _log(self, record: RequestRecord) -> None:
        with self._state.lock:
            self._state.log.append(record)

    # -- files ---------------------------------------------------------------------

    def _resolve(self, match_path: str) -> Path | None:
        """Map a URL path to a regular file under root, refusing anything that escapes."""
        rel = match_path.lstrip("/")
        parts = rel.split("/")
        if not rel or "\x00" in rel or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            return None
        candidate = self.root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved

    def _file_response(
        self, file: Path, headers: dict[str, str], *, conditional: bool
    ) -> _Response | None:
        """200 with the file, or 304 when the client's validators still match."""
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            with self._state.lock:
                cached = self._state.etags.get(str(file))
            etag = cached[1] if cached is not None and cached[0] == key else None
            data: bytes | None = None
            if etag is None:
                data = fh.read()
                etag = _etag(hashlib.sha256(data).hexdigest())
                with self._state.lock:
                    self._state.etags[str(file)] = (key, etag)
            response_headers = {
                "Content-Type": _content_type(file.name),
                "ETag": etag,
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                "Cache-Control": "no-cache",
            }
            if conditional:
                inm = headers.get("if-none-match")
                ims = headers.get("if-modified-since")
                if (inm is not None and _etag_matches(inm, etag)) or (
                    inm is None and ims is not None and _not_modified_since(ims, st.st_mtime)
                ):
                    return _Response(304, response_headers, b"")
            if data is None:
                data = fh.read()
        return _Response(200, response_headers, data)


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
