"""Run the real `mirror daemon` in a subprocess and observe it from outside."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `condition()` is truthy; its last value, or AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (OSError, ValueError, KeyError, json.JSONDecodeError, httpx.HTTPError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(interval)


class DaemonProcess:
    def __init__(self, config: Path, log: Path, metrics_port: int | None = None) -> None:
        self.config = config
        self.log = log
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        *,
        ready: str = "daemon ready",
    ) -> DaemonProcess:
        """Start it and wait until its log says `ready` (a daemon standing by for another
        host's writer lease never says "daemon ready": wait for "standing by" then) or it
        exits."""
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "daemon", "--config", str(self.config), *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        handle.close()
        self.wait_for_log(ready)
        return self

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Until the log holds `text` or the process has exited."""
        wait_for(lambda: text in self.text() or self.proc.poll() is not None, timeout)  # type: ignore[union-attr]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def metrics(self) -> str:
        assert self.metrics_port is not None
        response = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)
        response.raise_for_status()
        return response.text

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, label_text = key.partition("{")
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and got == wanted:
                return float(value)
        return 0.0

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
