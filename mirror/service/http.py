"""The daemon's one HTTP listener: the status page at /, /status.json and Prometheus /metrics.

Status is read per request from the state files (`collect_status`: SQLite WAL readers, which
never wait for the daemon's writers nor hold them up, and create nothing). /metrics is the same
exposition prometheus_client's own server gave: format chosen from the Accept header, gzip
when accepted.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from mirror.errors import MirrorError
from mirror.health.status import status_json
from mirror.reports import SubdirStatus
from mirror.service.status_page import render_status_page

log = logging.getLogger(__name__)

REFRESH_S = 30
# the page has no script, frames, forms or remote resources: say so, so that a value that
# slipped past escaping still could not run
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

StatusSource = Callable[[], Sequence[SubdirStatus]]


class StatusApp:
    """What the handler serves; the sources are passed in (nothing global)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        status: StatusSource,
        redact: Callable[[str], str] = str,
        clock: Callable[[], float] = time.time,
        refresh_s: int = REFRESH_S,
    ) -> None:
        self.registry = registry
        self.status = status
        self.redact = redact  # a last guard: the stored messages are redacted already
        self.clock = clock
        self.refresh_s = refresh_s


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never holds up the daemon's exit

    def __init__(self, address: tuple[str, int], app: StatusApp, family: int) -> None:
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mirror"

    def setup(self) -> None:
        super().setup()
        # answer at once: without it a keep-alive client waits ~40 ms per response (Nagle)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        app = self.server.app
        try:
            path = urlsplit(self.path).path
        except ValueError:  # a request line urllib cannot split: no page has such a name
            path = ""
        try:
            if path == "/metrics":
                status, headers, body = self._metrics(app)
            elif path in ("/", "/index.html"):
                page = render_status_page(app.status(), now=app.clock(), refresh_s=app.refresh_s)
                status, headers, body = _page(app.redact(page))
            elif path == "/status.json":
                document = app.redact(status_json(app.status())) + "\n"
                status, headers, body = _ok("application/json", document.encode())
            else:
                status, headers, body = _text(HTTPStatus.NOT_FOUND, "not found: try / or /metrics")
        except MirrorError as exc:  # e.g. a damaged state database: say so, keep serving
            log.error("%s: %s", path, app.redact(str(exc)))
            status, headers, body = _text(HTTPStatus.INTERNAL_SERVER_ERROR, app.redact(str(exc)))
        except Exception as exc:  # a bug fails this request, never the listener or the daemon
            log.exception("%s: internal error", path)
            text = app.redact(f"internal error: {exc!r}")
            status, headers, body = _text(HTTPStatus.INTERNAL_SERVER_ERROR, text)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _metrics(self, app: StatusApp) -> tuple[int, list[tuple[str, str]], bytes]:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(app.registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        return HTTPStatus.OK, headers, body

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.address_string(), *args)


def serve_status(
    host: str, port: int, app: StatusApp
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Listen on host:port (IPv4 or IPv6) in a background thread; (server, thread) as
    prometheus_client's start_http_server returns them. OSError when the address is taken."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server = _Server((host, port), app, family)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread


def _ok(content_type: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    return HTTPStatus.OK, [("Content-Type", content_type), ("Cache-Control", "no-store")], body


def _page(page: str) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, body = _ok("text/html; charset=utf-8", page.encode())
    headers += [
        ("Content-Security-Policy", PAGE_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]
    return status, headers, body


def _text(status: HTTPStatus, text: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "text/plain; charset=utf-8")], (text + "\n").encode()
