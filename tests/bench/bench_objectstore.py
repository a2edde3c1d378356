"""Smoke benchmark of the object-store adapter: import time, and PUT throughput of many small
files with bounded concurrency against moto (in a child process: no shared GIL).

    python -m tests.bench.bench_objectstore [--files 2000] [--workers 16] [--size 4096]

Figures, not a verdict: moto is a Python server on the same 2 cores, so the server is the
ceiling here. The bare-obstore row is the same PUTs without the adapter (its overhead is the
difference); the boto3 row is the alternative library with the same concurrency.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, environment

MOTO = (
    "import logging, sys, time\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "from moto.server import ThreadedMotoServer\n"
    "server = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False)\n"
    "server.start()\n"
    "time.sleep(3600)\n"
)


def import_seconds(module: str, rounds: int = 5) -> float:
    """Median wall time of `python -c 'import module'` minus that of `python -c pass`."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    bare = statistics.median(run("pass") for _ in range(rounds))
    return statistics.median(run(f"import {module}") for _ in range(rounds)) - bare


def start_moto() -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    child = subprocess.Popen([sys.executable, "-c", MOTO, str(port)])
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("PUT", "/bench")
            connection.getresponse().read()
            return child, port
        except OSError:
            time.sleep(0.05)
    child.kill()
    raise SystemExit("moto did not start")


def timed(label: str, files: list[Path], workers: int, put: Callable[[Path], object]) -> None:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, files))
    seconds = time.perf_counter() - start
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(
        f"{label:<34} {len(files) / seconds:8.0f} files/s {megabytes / seconds:7.2f} MB/s "
        f"({seconds:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    os.environ.update(environment())

    for module in ("mirror.adapters.objectstore", "obstore", "boto3"):
        print(f"import {module:<32} {import_seconds(module) * 1000:6.0f} ms")

    from mirror.adapters.objectstore import Bucket, BucketLocation

    child, port = start_moto()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            files = [Path(scratch) / f"pkg{i:05}-1.0-0.conda" for i in range(args.files)]
            for path in files:
                path.write_bytes(os.urandom(args.size))
            endpoint = f"http://127.0.0.1:{port}"
            start = time.perf_counter()
            bucket = Bucket(BucketLocation("bench", "adapter", endpoint_url=endpoint))
            print(f"Bucket() {(time.perf_counter() - start) * 1000:.1f} ms")
            timed(
                f"adapter put_file x{args.workers}",
                files,
                args.workers,
                lambda p: bucket.put_file(f"c/noarch/{p.name}", p),
            )
            timed(
                f"adapter put_file create_only x{args.workers}",
                files,
                args.workers,
                lambda p: bucket.put_file(f"c/new/{p.name}", p, create_only=True),
            )
            bare(files, endpoint, args.workers)
            boto(files, endpoint, args.workers)
    finally:
        child.kill()


def bare(files: list[Path], endpoint: str, workers: int) -> None:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        "bench",
        prefix="bare",
        endpoint=endpoint,
        region=REGION,
        client_options={"allow_http": True},
        checksum_algorithm="sha256",
    )
    timed(
        f"bare obstore put x{workers}",
        files,
        workers,
        lambda p: obstore.put(store, f"c/noarch/{p.name}", p.read_bytes()),
    )


def boto(files: list[Path], endpoint: str, workers: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
    ).client(
        "s3", endpoint_url=endpoint, region_name=REGION, config=Config(max_pool_connections=workers)
    )

    def put(path: Path) -> object:
        with path.open("rb") as body:
            return client.put_object(
                Bucket="bench",
                Key=f"boto/c/noarch/{path.name}",
                Body=body,
                ChecksumAlgorithm="SHA256",
            )

    timed(f"boto3 put_object x{workers}", files, workers, put)


if __name__ == "__main__":
    main()
