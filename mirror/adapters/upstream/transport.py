"""The client's transports: TLS set up only when an https:// URL is first asked for.

Loading the CA bundle into an SSL context costs about 0.1 s, a third of a sync that finds
upstream unchanged; an upstream on the site's network over plain http never needs it.
"""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Callable

import httpx


class SharedTls:
    """The TLS context of a process's client, built once when an https URL first needs it and
    shared by httpx and the direct package GETs (the same trust on both paths)."""

    def __init__(self, cafile: str | None) -> None:
        self._cafile = cafile  # a CA bundle named by the environment, else certifi's
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __call__(self) -> ssl.SSLContext:
        context = self._context
        if context is None:
            with self._lock:
                if self._context is None:
                    self._context = (
                        ssl.create_default_context(cafile=self._cafile)
                        if self._cafile
                        else httpx.create_ssl_context(trust_env=True)
                    )
                context = self._context
        return context


class LazyTransport(httpx.BaseTransport):
    """Builds its transport on the first request (once, whichever thread asks first)."""

    def __init__(self, build: Callable[[], httpx.BaseTransport]) -> None:
        self._build = build
        self._transport: httpx.BaseTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transport
        if transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = self._build()
                transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def transports(tls: SharedTls, limits: httpx.Limits) -> dict[str, httpx.BaseTransport] | None:
    """Mounts for plain http (no CA bundle loaded) and https (loaded when first needed); None
    when the environment names a proxy, whose mounts httpx builds itself from it."""
    if httpx._utils.get_environment_proxies():  # the rules httpx itself applies
        return None
    return {
        "http://": plain_transport(limits),
        "https://": LazyTransport(lambda: httpx.HTTPTransport(verify=tls(), limits=limits)),
    }


def plain_transport(limits: httpx.Limits | None = None) -> httpx.HTTPTransport:
    """A transport for http:// URLs only. httpx would build an SSL context for it anyway (and
    load its defaults, ~40 ms); it gets a bare one it never uses, which verifies nothing."""
    return httpx.HTTPTransport(verify=_unused_tls(), limits=limits or httpx.Limits())


@functools.cache
def _unused_tls() -> ssl.SSLContext:
    """One per process: even a bare context costs ~10 ms to make."""
    unused = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unused.check_hostname = False
    unused.verify_mode = ssl.CERT_NONE
    return unused
