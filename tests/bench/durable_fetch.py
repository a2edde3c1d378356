"""The durable bare fetch: the least work a sync of one subdir can do, as a baseline.

GET repodata.json, then every file it lists with N threads, each with its own http.client
connection (keep-alive), sha256 while streaming, write to its final name; one os.sync() once
every file is written (durable, as the mirror is). No temp files, no catalog, no index, no
retries, no pacing.

Two entry points for bench_per_file.py, each a child process of the benchmark (the loopback
server lives in the benchmark process and must not share a GIL with the client):

    python -m tests.bench.durable_fetch bare --url URL --subdir S --dest DIR --threads N
        one fetch; the child's wall time is the whole command
    python -m tests.bench.durable_fetch warm --url URL --subdir S --config-dir DIR
        --threads N --order bare,mirror
        a warm process (mirror imported, one warm-up of each): times the bare function and an
        in-process run_sync() call, each into a fresh target, in the given order
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

CHUNK_BYTES = 1 << 20


def bare_fetch(url: str, subdir: str, dest: Path, threads: int) -> dict[str, Any]:
    """Fetch a subdir's files into dest/<subdir>/; seconds include the repodata and the sync."""
    start = time.perf_counter()
    parts = urlsplit(url)
    host, port, base = parts.hostname or "127.0.0.1", parts.port, parts.path.rstrip("/")
    first = HTTPConnection(host, port, timeout=60)
    first.request("GET", f"{base}/{subdir}/repodata.json")
    response = first.getresponse()
    doc = json.loads(response.read())
    first.close()
    if response.status != 200:
        raise SystemExit(f"repodata.json: HTTP {response.status}")
    todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    files = 0
    for group in ("packages", "packages.conda"):
        for filename, record in doc.get(group, {}).items():
            todo.put((filename, record["sha256"]))
            files += 1
    folder = dest / subdir
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    files_start = time.perf_counter()

    def work() -> None:
        conn = HTTPConnection(host, port, timeout=60)
        try:
            while True:
                try:
                    filename, sha256 = todo.get_nowait()
                except queue.Empty:
                    return
                conn.request("GET", f"{base}/{subdir}/{quote(filename)}")
                got = conn.getresponse()
                digest = hashlib.sha256()
                with open(folder / filename, "wb") as out:
                    while chunk := got.read(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                if got.status != 200 or digest.hexdigest() != sha256:
                    errors.append(f"{filename}: HTTP {got.status} or sha256 mismatch")
        finally:
            conn.close()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    os.sync()
    end = time.perf_counter()
    return {
        "files": files,
        "seconds": end - start,
        "transfer_seconds": end - files_start,
        "errors": errors,
    }


def _bare(args: argparse.Namespace) -> int:
    result = bare_fetch(args.url, args.subdir, Path(args.dest), args.threads)
    print(json.dumps(result))
    return 1 if result["errors"] else 0


def write_config(out: Path, url: str, subdir: str) -> Path:
    """A config mirroring one subdir of `url` with default settings into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "mirror.yaml"
    config.write_text(
        f"root: {out / 'channels'}\nstate_dir: {out / 'state'}\n"
        f"channels:\n  bench:\n    upstream: {url}\n    subdirs: [{subdir}]\n"
    )
    return config


def _warm(args: argparse.Namespace) -> int:
    """Both contenders in one warm process: imports done, each run once before timing. The
    time of mirror's download step is taken by wrapping Transfer.run (files fetched, verified,
    installed, made durable and recorded in the catalog)."""
    from mirror.config import load_config
    from mirror.sync.run import SyncOptions, run_sync
    from mirror.sync.transfer import Transfer

    root = Path(args.config_dir)
    transfer_s: list[float] = []
    unwrapped = Transfer.run

    def timed(self: Transfer, *a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return unwrapped(self, *a, **kw)
        finally:
            transfer_s.append(time.perf_counter() - started)

    Transfer.run = timed  # type: ignore[method-assign]

    def mirror(out: Path) -> dict[str, Any]:
        config = load_config(write_config(out, args.url, args.subdir))
        transfer_s.clear()
        start = time.perf_counter()
        report = run_sync(config, SyncOptions())
        seconds = time.perf_counter() - start
        errors = [f"{s.subdir}: {s.outcome} {s.message or ''}" for s in report.subdirs if not s.ok]
        return {"seconds": seconds, "transfer_seconds": sum(transfer_s), "errors": errors}

    def bare(out: Path) -> dict[str, Any]:
        return bare_fetch(args.url, args.subdir, out / "target", args.threads)

    contenders: dict[str, Callable[[Path], dict[str, Any]]] = {"mirror": mirror, "bare": bare}
    results: dict[str, Any] = {}
    for name in args.order.split(","):
        warm_up = root / f"warm-up-{name}"
        contenders[name](warm_up)
        shutil.rmtree(warm_up)
    os.sync()  # the warm-ups' leftovers are not the first contender's to write
    for name in args.order.split(","):
        results[name] = contenders[name](root / name)
        os.sync()  # the next contender does not pay for this one's leftovers
    print(json.dumps(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.durable_fetch")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, handler in (("bare", _bare), ("warm", _warm)):
        command = sub.add_parser(name)
        command.add_argument("--url", required=True, help="the channel's URL")
        command.add_argument("--subdir", default="linux-64")
        command.add_argument("--threads", type=int, required=True)
        command.set_defaults(handler=handler)
        if name == "bare":
            command.add_argument("--dest", required=True)
        else:
            command.add_argument("--config-dir", required=True)
            command.add_argument("--order", default="mirror,bare")
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
