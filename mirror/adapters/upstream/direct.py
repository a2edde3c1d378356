"""Package GETs over http.client: keep-alive connections per origin, failures classified.

A sync of thousands of small files spent most of its CPU per file in httpx (request and
response models, header normalisation, and a connection pool that scans every connection for
each request), about 0.6 ms against 0.1 ms here. Package files need little of httpx: one GET,
one status, a body of known length. So when nothing in the way needs httpx (no proxy for the
scheme; the origin neither redirects nor encodes bodies) package files come through here;
repodata, shards and anything else stay on httpx. Pacing, retries and Retry-After stay with
the caller, around each request.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import select
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from mirror.errors import UpstreamError

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# what http.client leaves alone in a path: RFC 3986 pchar and "/" (a token's "%xx" stays)
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"

Origin = tuple[str, str, int]  # scheme, host, port
Redact = Callable[[str], str]


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float


@dataclass(frozen=True)
class Target:
    """Where a GET goes, parsed once per upstream rather than once per file: the origin, the
    request target (path and query, quoted), and the Basic credentials of the URL, if any."""

    origin: Origin
    path: str
    basic_auth: str | None = None

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        origin = (parts.scheme, parts.hostname or "", parts.port or default)
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            path += f"?{parts.query}"
        auth = None
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(secret.encode()).decode()
        return cls(origin, path, auth)

    def child(self, suffix: str) -> Target:
        """The target of `suffix` (e.g. `/linux-64/a-1-0.conda`) below this one's path."""
        return Target(self.origin, self.path.rstrip("/") + quote(suffix, safe=_PATH_SAFE),
                      self.basic_auth)  # fmt: skip


class DirectResponse:
    """A response whose status and headers have arrived; its body is read by chunks()."""

    def __init__(self, response: http.client.HTTPResponse, shown: str, redact: Redact) -> None:
        self._response = response
        self._shown, self._redact = shown, redact
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self._response.getheader(name)

    @property
    def plain(self) -> bool:
        """Neither a redirect nor an encoded body: what this path serves (httpx does the rest)."""
        encoding = (self.header("Content-Encoding") or "identity").strip().lower()
        return self.status not in REDIRECTS and encoding == "identity"

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body; a connection closed before Content-Length bytes is an UpstreamError."""
        response, got = self._response, 0
        try:
            while chunk := response.read(size):
                got += len(chunk)
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise classified(exc, self._shown, self._redact) from None
        if response.length:  # http.client returns b"" at an early end instead of raising
            raise UpstreamError(
                f"{self._shown}: connection closed mid-transfer after {got} bytes, "
                f"{response.length} short of its Content-Length",
                reason="truncated",
            )


class DirectPool:
    """Idle keep-alive connections per origin, shared by the threads of a process."""

    def __init__(
        self, user_agent: str, tls: Callable[[], ssl.SSLContext], proxied: frozenset[str]
    ) -> None:
        self._user_agent = user_agent
        self._tls = tls  # the client's one TLS context, built when an https origin first needs it
        # schemes with a proxy in the environment go through httpx, which knows proxies
        self._proxied = proxied
        self._lock = threading.Lock()
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._avoided: set[Origin] = set()

    def serves(self, target: Target) -> bool:
        scheme = target.origin[0]
        if scheme not in ("http", "https") or scheme in self._proxied or "all" in self._proxied:
            return False
        return target.origin not in self._avoided

    def avoid(self, target: Target) -> None:
        """The origin redirects or encodes bodies: its requests go through httpx from now on."""
        with self._lock:
            self._avoided.add(target.origin)

    @contextlib.contextmanager
    def get(
        self,
        target: Target,
        headers: dict[str, str],
        timeouts: Timeouts,
        shown: str,
        redact: Redact,
    ) -> Iterator[DirectResponse]:
        """A GET on a kept-alive connection (or a new one); the connection is kept again only
        if its response was read to the end."""
        origin = target.origin
        sent = {"User-Agent": self._user_agent, "Accept": "*/*", **headers}
        if target.basic_auth is not None and "Authorization" not in sent:
            sent["Authorization"] = target.basic_auth
        conn = self._checkout(origin, timeouts, shown, redact)
        reusable = False
        try:
            try:
                conn.request("GET", target.path, headers=sent)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise classified(exc, shown, redact) from None
            yield DirectResponse(response, shown, redact)
            reusable = response.isclosed() and not response.will_close
        finally:
            if reusable:
                with self._lock:
                    self._idle.setdefault(origin, []).append(conn)
            else:
                conn.close()

    def _checkout(
        self, origin: Origin, timeouts: Timeouts, shown: str, redact: Redact
    ) -> http.client.HTTPConnection:
        """The most recently used idle connection that the server has not closed meanwhile
        (a closed one reads as ready: EOF), else a new one."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()
        scheme, host, port = origin
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=timeouts.connect_s, context=self._tls()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeouts.connect_s)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise classified(exc, shown, redact, connecting=True) from None
        assert conn.sock is not None
        conn.sock.settimeout(timeouts.read_s)
        return conn

    def close(self) -> None:
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()


def classified(
    exc: BaseException, shown: str, redact: Redact, *, connecting: bool = False
) -> UpstreamError:
    """The failure as httpx's were classified: timeout, connect, truncated or connection."""
    text = redact(str(exc) or type(exc).__name__)
    if isinstance(exc, TimeoutError):
        phase = "ConnectTimeout" if connecting else "ReadTimeout"
        return UpstreamError(f"{shown}: timed out ({phase})", reason="timeout")
    if connecting:
        return UpstreamError(f"{shown}: cannot connect ({text})", reason="connect")
    reason = "truncated" if isinstance(exc, http.client.IncompleteRead) else "connection"
    return UpstreamError(f"{shown}: connection failed mid-transfer ({text})", reason=reason)


def _readable(sock: object) -> bool:
    """Whether an idle socket has something to read (EOF, a reset, stray bytes): unusable."""
    fileno = getattr(sock, "fileno", lambda: -1)()
    if fileno < 0:
        return True
    if not hasattr(select, "poll"):  # not Linux or macOS
        return bool(select.select([fileno], [], [], 0)[0])
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))
