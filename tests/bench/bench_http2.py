"""Benchmark: HTTP/1.1 with N connections vs HTTP/2 with N streams on one, from a slow upstream.

Is HTTP/2 multiplexing (httpx[http2]) worth having for package downloads, or are N keep-alive
HTTP/1.1 connections as good? Both fetch the same files with the same client code: one httpx
client, N threads, GET + sha256 while streaming, bytes discarded (no disk: only the transport
differs). The upstream is hypercorn (HTTP/1.1 and HTTP/2 over TLS, chosen by ALPN as a CDN
does) in a child process, serving a folder of files with --latency-ms before every answer.

The files are those of bench_sync.py's generated channel (linux-64, 5-200 KB each), or with
--large-mb SIZE, 40 files of SIZE MB of random bytes (a transfer-bound case: HTTP/2's
per-stream flow control and a pure-Python framing layer show there).

Needs `pip install h2 hypercorn` (not project dependencies). Run from the repository root:
    python -m tests.bench.bench_http2 [--rounds 3] [--latency-ms 50] [--streams 8,32]
                                      [--large-mb 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.bench.benchlib import PYTHON, REPO, Summary, fmt_ratio, fmt_s, markdown_table

ROOT_ENV, LATENCY_ENV = "BENCH_HTTP2_ROOT", "BENCH_HTTP2_LATENCY_S"


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The ASGI upstream: a file under the root, after the latency; 404 otherwise."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(float(os.environ.get(LATENCY_ENV, "0")))
    root = Path(os.environ[ROOT_ENV])
    path = (root / scope["path"].lstrip("/")).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    data = path.read_bytes()
    headers = [(b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def make_files(workdir: Path, large_mb: int) -> tuple[Path, list[str]]:
    if large_mb:
        root = workdir / f"large-{large_mb}"
        root.mkdir(parents=True, exist_ok=True)
        names = [f"file{i:02d}.bin" for i in range(40)]
        for name in names:
            if not (root / name).exists():
                (root / name).write_bytes(os.urandom(large_mb * 1_000_000))
        return root, names
    from tests.bench.bench_sync import SEED, Sizes, ensure_upstream

    base, channel = ensure_upstream(workdir / "sync", Sizes(986), SEED)
    root = base / "bench-channel" / "linux-64"
    return root, sorted(channel["linux-64"])


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch_all(url: str, names: list[str], streams: int, http2: bool, cert: Path) -> float:
    import httpx

    limits = httpx.Limits(max_connections=1 if http2 else streams)
    with httpx.Client(
        http1=not http2, http2=http2, verify=str(cert), limits=limits, timeout=120
    ) as client:
        client.get(f"{url}/{names[0]}").raise_for_status()  # connect (TLS) before the clock

        def one(name: str) -> None:
            digest = hashlib.sha256()
            with client.stream("GET", f"{url}/{name}") as response:
                response.raise_for_status()
                assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)

        start = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(one, names))
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_http2", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--streams", default="8,32", help="threads (and h1 connections)")
    parser.add_argument("--large-mb", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    args = parser.parse_args(argv)
    root, names = make_files(args.workdir.resolve(), args.large_mb)
    streams = [int(s) for s in args.streams.split(",")]
    samples: dict[str, list[float]] = {}
    failures: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        port = free_port()
        env = {**os.environ, ROOT_ENV: str(root), LATENCY_ENV: str(args.latency_ms / 1000)}
        server = subprocess.Popen(
            [PYTHON, "-m", "hypercorn", "--certfile", str(cert), "--keyfile", str(key),
             "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
             "tests.bench.bench_http2:app"],
            cwd=REPO, env=env,
        )  # fmt: skip
        try:
            time.sleep(2.0)
            url = f"https://127.0.0.1:{port}"
            for round_no in range(args.rounds):
                for n in streams:
                    for http2 in (round_no % 2 == 0, round_no % 2 == 1):
                        row = f"HTTP/{'2, one connection' if http2 else '1.1'}, {n} at once"
                        try:
                            seconds = fetch_all(url, names, n, http2, cert)
                        except Exception as exc:  # counted and shown: part of the answer
                            failures.setdefault(row, []).append(f"{type(exc).__name__}: {exc}")
                            print(f"round {round_no + 1}: {row}: failed: {exc!r}", flush=True)
                            continue
                        samples.setdefault(row, []).append(seconds)
                        print(f"round {round_no + 1}: {row}: {seconds:.2f} s", flush=True)
        finally:
            server.terminate()
            server.wait()
    what = f"40 x {args.large_mb} MB" if args.large_mb else f"{len(names)} files of 5-200 KB"
    print(f"\n### {what}, upstream {args.latency_ms:g} ms away, {args.rounds} rounds\n")
    rows = []
    for n in streams:
        h1 = Summary.of(samples.get(f"HTTP/1.1, {n} at once", []))
        for row in (f"HTTP/1.1, {n} at once", f"HTTP/2, one connection, {n} at once"):
            summary = Summary.of(samples.get(row, []))
            rows.append(
                [
                    row,
                    fmt_s(summary.median),
                    f"{fmt_s(summary.minimum)} / {fmt_s(summary.maximum)}",
                    fmt_ratio(summary.median / h1.median),
                    f"{len(failures.get(row, []))} of {args.rounds}",
                ]
            )
    headers = ["transport", "median s", "min / max s", "vs HTTP/1.1", "runs failed"]
    print(markdown_table(headers, rows))
    for row, errors in failures.items():
        print(f"- {row}: {'; '.join(sorted(set(errors)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
