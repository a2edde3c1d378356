"""A reverse proxy on 127.0.0.1 in front of an S3 server: records, checks checksums, injects faults.

moto accepts `x-amz-checksum-sha256` and `Content-MD5` without checking them (moto 5.2,
`S3Response._get_checksum` carries a TODO where AWS compares), so a test against bare moto
cannot tell a client that sends a wrong checksum from one that sends a right one. The gateway
does what AWS, MinIO and Ceph do with an upload: it recomputes the body's SHA-256 (and MD5,
and the SigV4 payload hash) and answers 400 `BadDigest` on a mismatch, before the request
reaches moto. It also records every request's headers, so a test can prove a header was sent,
and it can fail requests on purpose (5xx, `SlowDown`, 429, a reset before or after the server
did the work) and corrupt upload bodies in transit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import random
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FAULT_KINDS", "GatewayRequest", "S3Gateway"]

# "500": InternalError; "503": SlowDown (S3's throttling answer); "429": Too Many Requests;
# "reset": the connection is closed with an RST before the server saw the request;
# "lost_reply": the server did the work, then the client's connection is reset (the client
# cannot know whether its PUT happened);
# "truncate": the server's answer with its full Content-Length but only half its body, then
# a reset (a link that breaks mid-download);
# "stall": no answer for `stall_s` seconds, then a reset (the server never saw it);
# "late_500": the server did the work, then the client gets 500 InternalError (as from a
# load balancer that gave up waiting);
# "denied": 403 SignatureDoesNotMatch with the body AWS sends, which echoes the canonical
# request, session token included (a client must not repeat it in its messages).
FAULT_KINDS = frozenset(
    {"500", "503", "429", "reset", "lost_reply", "late_500", "truncate", "stall", "denied"}
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>gateway</RequestId></Error>"
)


@dataclass(frozen=True)
class GatewayRequest:
    """One request as the gateway saw it (headers lower-cased) and what became of it."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int
    status: int
    fault: str | None = None
    reply_size: int = 0


@dataclass
class _Policy:
    rate: float = 0.0
    kinds: tuple[str, ...] = ("500", "503")
    corrupt_uploads: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    queued: list[str] = field(default_factory=list)


class S3Gateway:
    """Started with `with S3Gateway(upstream_port) as gw:`; clients talk to `gw.url`."""

    def __init__(
        self, upstream_port: int, *, verify_checksums: bool = True, stall_s: float = 2.0
    ) -> None:
        self.upstream_port = upstream_port
        self.stall_s = stall_s
        self.verify_checksums = verify_checksums
        self.requests: list[GatewayRequest] = []
        self._policy = _Policy()
        self._lock = threading.Lock()
        self._conditional_writes = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> S3Gateway:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- what the test controls -------------------------------------------------------------

    def fail_randomly(
        self, rate: float, kinds: Iterable[str] = ("500", "503"), seed: int = 0
    ) -> None:
        """Fail this share of requests from now on, each with one of `kinds` (seeded)."""
        chosen = tuple(kinds)
        assert set(chosen) <= FAULT_KINDS, chosen
        with self._lock:
            self._policy = _Policy(rate, chosen, self._policy.corrupt_uploads, random.Random(seed))

    def fail_next(self, *kinds: str) -> None:
        """Fail the next requests, one fault each, in this order (before any random ones)."""
        assert set(kinds) <= FAULT_KINDS, kinds
        with self._lock:
            self._policy.queued.extend(kinds)

    def corrupt_next_uploads(self, count: int = 1) -> None:
        """Flip one byte in the body of the next `count` PUTs, as a bad link would."""
        with self._lock:
            self._policy.corrupt_uploads = count

    def heal(self) -> None:
        with self._lock:
            self._policy = _Policy()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_of(self, method: str) -> list[GatewayRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    # -- used by the handler ----------------------------------------------------------------

    def _draw(self, method: str) -> tuple[str | None, bool]:
        with self._lock:
            policy = self._policy
            fault = None
            if policy.queued:
                fault = policy.queued.pop(0)
            elif policy.rate and policy.rng.random() < policy.rate:
                fault = policy.rng.choice(policy.kinds)
            corrupt = False
            if method == "PUT" and policy.corrupt_uploads and fault is None:
                policy.corrupt_uploads -= 1
                corrupt = True
            return fault, corrupt

    def _record(self, request: GatewayRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: S3Gateway) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # without it every small response waits on Nagle's algorithm (about 40 ms)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up mid-request are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        owner = self.server.owner
        if self.path.startswith(("http://", "https://")):
            # a client using the gateway as its HTTP proxy (virtual-hosted addressing: the
            # bucket is in the Host header, which moto reads)
            self.path = "/" + self.path.split("://", 1)[1].partition("/")[2]
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body(headers)
        fault, corrupt = owner._draw(self.command)

        def record(status: int, fault_name: str | None = None, reply_size: int = 0) -> None:
            owner._record(
                GatewayRequest(
                    self.command, self.path, headers, len(body), status, fault_name, reply_size
                )
            )

        if fault in ("500", "503", "429"):
            record(int(fault), fault)
            self._fail(int(fault))
            return
        if fault in ("reset", "stall"):
            record(0, fault)
            if fault == "stall":
                time.sleep(owner.stall_s)
            self._reset()
            return
        if fault == "denied":
            record(403, fault)
            self._send(403, {"content-type": "application/xml"}, _signature_mismatch(headers))
            return
        if corrupt and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        refusal = _checksum_refusal(headers, body) if owner.verify_checksums else None
        if refusal is not None:
            record(400, "corrupt" if corrupt else None)
            self._send(400, {"content-type": "application/xml"}, refusal.encode())
            return
        if self.command != "GET" and ("if-match" in headers or "if-none-match" in headers):
            # moto checks a precondition and then writes, without a lock between: two racing
            # conditional PUTs could both pass. AWS, MinIO and Ceph decide atomically, so the
            # gateway lets one conditional write through at a time.
            with owner._conditional_writes:
                status, reply_headers, reply = self._forward(headers, body, owner.upstream_port)
        else:
            status, reply_headers, reply = self._forward(headers, body, owner.upstream_port)
        record(status, fault or ("corrupt" if corrupt else None), len(reply))
        if fault == "lost_reply":
            self._reset()
            return
        if fault == "late_500":
            self._fail(500)
            return
        if fault == "truncate" and len(reply) > 1:
            self._send(status, reply_headers, reply, body_limit=len(reply) // 2)
            self._reset()
            return
        self._send(status, reply_headers, reply)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(headers.get("content-length", "0") or 0))

    def _forward(
        self, headers: dict[str, str], body: bytes, port: int
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                sent["content-length"] = str(len(body))
            connection.request(self.command, self.path, body=body or None, headers=sent)
            response = connection.getresponse()
            reply = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, reply
        finally:
            connection.close()

    def _send(self, status: int, headers: Any, body: bytes, body_limit: int | None = None) -> None:
        items = headers.items() if isinstance(headers, dict) else headers
        self.send_response(status)
        has_length = False
        for key, value in items:
            has_length = has_length or key.lower() == "content-length"
            if key.lower() in ("server", "date"):
                continue
            self.send_header(key, value)
        if not has_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if body_limit is None else body[:body_limit])
            self.wfile.flush()

    def _fail(self, status: int) -> None:
        code, message = {
            500: ("InternalError", "We encountered an internal error. Please try again."),
            503: ("SlowDown", "Please reduce your request rate."),
            429: ("TooManyRequests", "Please reduce your request rate."),
        }[status]
        self._send(
            status,
            {"content-type": "application/xml"},
            _ERROR_XML.format(code=code, message=message).encode(),
        )

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends an RST instead of a FIN, like a dropped link
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()


def _signature_mismatch(headers: dict[str, str]) -> bytes:
    canonical = "\n".join(f"{k}:{v}" for k, v in sorted(headers.items()))
    authorization = headers.get("authorization", "")
    access_key = authorization.partition("Credential=")[2].partition("/")[0]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
        "<Message>The request signature we calculated does not match the signature you "
        f"provided. Check your key and signing method.</Message><AWSAccessKeyId>{access_key}"
        f"</AWSAccessKeyId><CanonicalRequest>{canonical}</CanonicalRequest>"
        "<RequestId>gateway</RequestId></Error>"
    ).encode()


def _checksum_refusal(headers: dict[str, str], body: bytes) -> str | None:
    """The error AWS gives a body that does not match a checksum its request declares."""
    if "aws-chunked" in headers.get("content-encoding", ""):
        return None  # trailing checksums inside aws-chunked framing: not checked here
    sha256 = headers.get("x-amz-checksum-sha256")
    if sha256 is not None and sha256 != base64.b64encode(hashlib.sha256(body).digest()).decode():
        return _ERROR_XML.format(
            code="BadDigest",
            message="The SHA256 you specified did not match the calculated checksum.",
        )
    md5 = headers.get("content-md5")
    if md5 is not None and md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
        return _ERROR_XML.format(
            code="BadDigest",
            message="The Content-MD5 you specified did not match what we received.",
        )
    payload = headers.get("x-amz-content-sha256", "")
    if len(payload) == 64 and payload != hashlib.sha256(body).hexdigest():
        return _ERROR_XML.format(
            code="XAmzContentSHA256Mismatch",
            message="The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    return None
