"""The daemon's HTTP listener on its own, on 127.0.0.1: routes, headers, and what a failing
status read does to a request (and not to the listener)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from mirror.errors import MirrorError
from mirror.health.status import status_json
from mirror.reports import SubdirStatus
from mirror.service.http import StatusApp, serve_status

ROW = SubdirStatus("chan", "linux-64", 3, 300, 1.0, "failed", None, 0, last_message="boom")


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    servers = []

    def start(status: Callable[[], Sequence[SubdirStatus]], **app: object) -> str:
        registry = CollectorRegistry()
        Counter("demo_requests_total", "A demo counter.", registry=registry).inc(2)
        server, thread = serve_status("127.0.0.1", 0, StatusApp(registry, status, **app))
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_routes_and_their_content_types(serve) -> None:
    url = serve(lambda: [ROW])
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'data-channel="chan"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    document = httpx.get(f"{url}/status.json?anything=1")
    assert document.text == status_json([ROW]) + "\n"
    assert json.loads(document.text)[0]["last_message"] == "boom"
    metrics = httpx.get(f"{url}/metrics")
    assert "demo_requests_total 2.0" in metrics.text
    assert httpx.get(f"{url}/favicon.ico").status_code == 404
    assert httpx.post(f"{url}/").status_code == 501  # read-only: no other method


def test_head_answers_headers_only_and_metrics_are_gzipped_when_asked(serve) -> None:
    url = serve(lambda: [ROW])
    head = httpx.head(f"{url}/")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 1000
    headers = {"Accept-Encoding": "gzip"}
    with httpx.stream("GET", f"{url}/metrics", headers=headers) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert b"demo_requests_total 2.0" in gzip.decompress(raw)
    plain = httpx.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


def test_a_failing_status_read_fails_that_request_redacted_and_the_listener_goes_on(
    serve,
) -> None:
    calls = []

    def status() -> list[SubdirStatus]:
        calls.append(1)
        if len(calls) == 1:
            raise MirrorError("state.sqlite is damaged (token tok-SECRET-1 in a path)")
        if len(calls) == 2:
            raise RuntimeError("a bug quoting tok-SECRET-1")
        return [ROW]

    url = serve(status, redact=lambda text: text.replace("tok-SECRET-1", "***"))
    first = httpx.get(f"{url}/")
    assert first.status_code == 500
    assert "damaged" in first.text and "tok-SECRET-1" not in first.text
    second = httpx.get(f"{url}/status.json")
    assert second.status_code == 500 and "internal error" in second.text
    assert "tok-SECRET-1" not in second.text
    assert httpx.get(f"{url}/").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200


def test_the_page_and_json_pass_through_the_redactor(serve) -> None:
    leaky = SubdirStatus("chan", "noarch", 0, 0, None, None, None, 0, last_message="tok-XYZ-99")
    url = serve(lambda: [leaky], redact=lambda text: text.replace("tok-XYZ-99", "***"))
    for path in ("/", "/status.json"):
        body = httpx.get(f"{url}{path}").text
        assert "tok-XYZ-99" not in body and "***" in body, path
