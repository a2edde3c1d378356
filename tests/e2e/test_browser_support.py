"""The browser helper itself: what the status page test asserts ("no console errors") is only
worth something if the helper does report errors when a page has them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Chromium, find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium (Debian package chromium) not installed"
)
BROKEN_PAGE = b"""<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>
<p id="hello">hello</p><img src="/missing.png">
<script>console.error("from the page", 42); undefinedFunction();</script></body></html>"""


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(BROKEN_PAGE)))
        self.end_headers()
        self.wfile.write(BROKEN_PAGE)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_console_calls_exceptions_and_failed_loads_are_reported(site: str, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    with Chromium(CHROMIUM, tmp_path) as browser:
        page = browser.open(f"{site}/")
        assert page.evaluate("document.getElementById('hello').innerText") == "hello"
        errors = page.console_errors()
        shot = page.screenshot(tmp_path / "shot.png")
    sources = {(e.source, e.text.split(":")[0]) for e in errors}
    assert ("console", "from the page 42") in sources
    assert any(e.source == "exception" and "undefinedFunction" in e.text for e in errors)
    assert any(e.source == "network" and (e.url or "").endswith("/missing.png") for e in errors)
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert browser.pid is None  # closed: the process was waited for
