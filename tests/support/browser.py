"""Headless Chromium driven over the DevTools protocol on a pipe: load a page, query it, collect
its console errors, take a screenshot.

Why the raw protocol on `--remote-debugging-pipe` rather than selenium or playwright: it needs
nothing from PyPI and no driver binary, so there is no driver/browser version pairing to keep;
no TCP port is opened; and console errors arrive as protocol events (Runtime, Log) rather than
through a driver's logging extension. The domains used (Target, Page, Runtime, Log, Emulation)
are the protocol's stable core.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import math
import os
import select
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# root needs --no-sandbox; the rest keep a test browser from phoning home or doing extra work
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",  # screenshots show the page, not the browser's chrome
    "--remote-debugging-pipe",
)
_FIRST_FREE_FD = 10  # above the 0-4 the child's stdio and the protocol pipe take


def find_chromium() -> str | None:
    """The Chromium binary on PATH (Debian: /usr/bin/chromium), or None."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


class BrowserError(RuntimeError):
    pass


@dataclass(frozen=True)
class ConsoleMessage:
    """A console call, an uncaught exception or a browser log entry (network, CSP, ...)."""

    source: str  # console | exception | network | security | ...
    level: str  # error | warning | info | log | debug ...
    text: str
    url: str | None = None

    @property
    def is_error(self) -> bool:
        return self.level in ("error", "assert") or self.source == "exception"


class Chromium:
    """One browser process; `open(url)` gives a loaded page. Use as a context manager."""

    def __init__(self, binary: str, workdir: Path, *, timeout_s: float = 30.0) -> None:
        self.binary = binary
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.pid: int | None = None
        self._to_browser: int | None = None
        self._from_browser: int | None = None
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Chromium:
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)  # a fresh --user-data-dir per browser
        commands_r, commands_w = _pipe_above(_FIRST_FREE_FD)
        replies_r, replies_w = _pipe_above(_FIRST_FREE_FD)
        log_fd = os.open(self.workdir / "chromium.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        env = {
            **os.environ,
            "HOME": str(self.workdir),  # keep caches and crash reports out of the real home
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_CACHE_HOME": str(self.workdir / "cache"),
        }
        argv = [self.binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        try:
            # posix_spawn places the pipe on fds 3 and 4, where Chromium expects it, without
            # the thread-unsafe preexec_fn a subprocess.Popen would need
            self.pid = os.posix_spawn(
                self.binary,
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, null_fd, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                    (os.POSIX_SPAWN_DUP2, commands_r, 3),
                    (os.POSIX_SPAWN_DUP2, replies_w, 4),
                ],
            )
        except OSError:
            os.close(commands_w)
            os.close(replies_r)
            raise
        finally:
            for fd in (commands_r, replies_w, log_fd, null_fd):
                os.close(fd)
        self._to_browser, self._from_browser = commands_w, replies_r
        try:
            self.call("Browser.getVersion")  # answers once the browser is up
        except BaseException:
            self.close()  # no browser left behind by a failed start
            raise
        return self

    def close(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close", timeout_s=5.0)
        for fd in (self._to_browser, self._from_browser):
            if fd is not None:
                os.close(fd)
        self._to_browser = self._from_browser = None
        deadline = time.monotonic() + 5.0
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)  # only the process this object started
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        self.pid = None

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def log_text(self) -> str:
        path = self.workdir / "chromium.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- pages ------------------------------------------------------------------------------

    def open(self, url: str, *, width: int = 1280, height: int = 900) -> Page:
        """A new tab showing `url`, once it has loaded and its network has gone quiet."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Page.setLifecycleEventsEnabled", {"enabled": True})
        page.set_viewport(width, height)
        page.navigate(url)
        return page

    # -- the protocol -----------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; events read meanwhile are kept."""
        if self._to_browser is None:
            raise BrowserError("the browser is not running")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            reply = self._read(deadline, f"the reply to {method}")
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_event(
        self, method: str, session: str | None, *, match: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The params of the first event `method` (with these params) not consumed yet."""
        deadline = time.monotonic() + self.timeout_s
        seen = 0
        while True:
            for event in self._events[seen:]:
                params: dict[str, Any] = event.get("params", {})
                if (
                    event["method"] == method
                    and event.get("sessionId") == session
                    and all(params.get(k) == v for k, v in (match or {}).items())
                ):
                    self._events.remove(event)
                    return params
            seen = len(self._events)
            self._events.append(self._read(deadline, f"event {method}"))

    def events(self, session: str) -> Iterator[dict[str, Any]]:
        return (e for e in self._events if e.get("sessionId") == session)

    def _read(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        assert self._from_browser is not None
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"timed out waiting for {waiting_for}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError(f"the browser exited; its log:\n{self.log_text()[-4000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message


class Page:
    """One attached tab."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def set_viewport(self, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def navigate(self, url: str) -> None:
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot load {url}: {result['errorText']}")
        frame = result["frameId"]
        # after `load`, networkIdle: nothing the page asks for later is missed
        self.browser.wait_event("Page.loadEventFired", self.session)
        self.browser.wait_event(
            "Page.lifecycleEvent", self.session, match={"frameId": frame, "name": "networkIdle"}
        )

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console(self) -> list[ConsoleMessage]:
        """Everything the page logged so far: console calls, exceptions, browser log entries."""
        found = []
        for event in self.browser.events(self.session):
            found.extend(_console_message(event["method"], event.get("params", {})))
        return found

    def console_errors(self) -> list[ConsoleMessage]:
        return [m for m in self.console() if m.is_error]

    def http_status(self) -> int | None:
        """The status of the document's own response."""
        for event in self.browser.events(self.session):
            params = event.get("params", {})
            if event["method"] == "Network.responseReceived" and params.get("type") == "Document":
                return int(params["response"]["status"])
        return None

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not only the viewport)."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        width, height = math.ceil(size["width"]), math.ceil(size["height"])
        self.set_viewport(max(width, 320), max(height, 200))
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


def _console_message(method: str, params: dict[str, Any]) -> list[ConsoleMessage]:
    if method == "Runtime.consoleAPICalled":
        text = " ".join(
            str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])
        )
        return [ConsoleMessage("console", params.get("type", "log"), text)]
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        text = details.get("exception", {}).get("description") or details.get("text", "")
        return [ConsoleMessage("exception", "error", text, details.get("url"))]
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        return [
            ConsoleMessage(
                entry.get("source", "other"),
                entry.get("level", "info"),
                entry.get("text", ""),
                entry.get("url"),
            )
        ]
    return []


def _pipe_above(lowest: int) -> tuple[int, int]:
    """A pipe whose ends are numbered >= `lowest`, so moving them onto 3 and 4 in the child
    cannot overwrite one with the other."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest))
        os.close(fd)
    return ends[0], ends[1]
