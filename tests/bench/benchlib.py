"""Shared benchmark plumbing: timed child processes with their own peak RSS, stats, tables.

Every tool under comparison runs as a child process with the same environment, so each pays
its own interpreter start-up and none shares a GIL with the loopback server that lives in the
benchmark process. The baselines that are not a CLI (a bare httpx fetch, a plain msgspec
decode) are entry points of this module for the same reason:

    python -m tests.bench.benchlib bare-fetch --channel URL --subdir linux-64 --dest DIR
    python -m tests.bench.benchlib decode FILE
    python -m tests.bench.benchlib profile-mirror OUT.prof sync --config CFG
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CONDA_MIRROR = str(Path(sys.executable).parent / "conda-mirror")
T = TypeVar("T")


def child_env() -> dict[str, str]:
    """One environment for every child: loopback never goes through a proxy, for any client;
    compiled modules are cached as on any installation (a shell that sets
    PYTHONDONTWRITEBYTECODE would make every run compile mirror's ~250 modules again, ~0.15 s
    that no installed mirror pays; the first round warms the cache)."""
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.pop("MIRROR_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class ChildRun:
    """One finished child: wall seconds, exit code, its own peak RSS and where its output is."""

    seconds: float
    returncode: int
    max_rss_bytes: int
    log: Path
    timed_out: bool = False
    cpu_s: float = 0.0  # user + system, its own children included

    def output(self) -> str:
        return self.log.read_text(errors="replace")


GNU_TIME = Path("/usr/bin/time")


def run_child(
    cmd: Sequence[str],
    log: Path,
    *,
    env: dict[str, str],
    cwd: Path = REPO,
    timeout: float | None = None,
) -> ChildRun:
    """Run cmd to completion, timing it with perf_counter, and measure its own peak RSS.

    The peak RSS comes from GNU time wrapped around the command. Neither os.wait4 nor
    RUSAGE_CHILDREN can give it: subprocess spawns with vfork, and exec records the hiwater
    RSS of the mm it replaces, which is the (possibly multi-GB) benchmark process itself.
    Without /usr/bin/time the wait4 figure is reported, an upper bound.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_suffix(".maxrss")
    wrapped = list(cmd)
    if GNU_TIME.exists():
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *wrapped]
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call created, nothing else

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    max_rss = usage.ru_maxrss * 1024
    with contextlib.suppress(OSError, ValueError, IndexError):
        max_rss = int(rss_file.read_text().split()[-1]) * 1024
    cpu = usage.ru_utime + usage.ru_stime
    return ChildRun(seconds, proc.returncode, max_rss, log, fired.is_set(), cpu)


@dataclass(frozen=True)
class Summary:
    """Median, min and max of repeated measurements (the machine is noisy: never one run)."""

    median: float
    minimum: float
    maximum: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        data = list(values)
        if not data:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(data), min(data), max(data), len(data))


@dataclass
class Sample:
    """One measurement of one tool in one round."""

    seconds: float
    max_rss_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


Samples = dict[str, list[Sample]]


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """items rotated by shift: alternates which tool goes first each round (warm caches,
    background noise and thermal drift then hit every tool alike)."""
    k = shift % len(items) if items else 0
    return [*items[k:], *items[:k]]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(headers))) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.1f}"


def rows_json(samples: Mapping[str, Sequence[Any]], summaries: Mapping[str, Any]) -> dict[str, Any]:
    """Each row's summary and samples (dataclasses), as the benchmarks' --json output holds them."""
    return {
        row: {"summary": asdict(summaries[row]), "samples": [asdict(s) for s in runs]}
        for row, runs in samples.items()
    }


def write_json(path: Path, payload: Any) -> None:
    def default(obj: Any) -> Any:
        if isinstance(obj, Path):
            return str(obj)
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)
        raise TypeError(repr(obj))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=default, sort_keys=True) + "\n")
    print(f"wrote {path}")


def warm_server(base_url: str, paths: Iterable[str], workers: int = 8) -> None:
    """HEAD every path once: UpstreamServer hashes a file for its ETag on first sight, and that
    one-off cost (and the cold page cache) must not land in whichever tool happens to go first."""
    import httpx

    with (
        httpx.Client(base_url=base_url, trust_env=False, timeout=120) as client,
        ThreadPoolExecutor(workers) as pool,
    ):
        for response in pool.map(lambda p: client.head(p), paths):
            response.raise_for_status()


# -- child entry points ---------------------------------------------------------------------


def _bare_fetch(args: argparse.Namespace) -> int:
    """The practical limit of a sync: fetch repodata, then GET every file it lists with one
    httpx client and a pool of workers, sha256 while streaming, write to disk. No temp files,
    no catalog, no publishing; fsync only when asked."""
    import httpx
    import msgspec

    start = time.perf_counter()
    dest = Path(args.dest)
    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    jobs: list[tuple[str, str, str]] = []
    errors: list[str] = []
    with httpx.Client(limits=limits, trust_env=False, timeout=60) as client:
        for subdir in args.subdir:
            response = client.get(f"{args.channel}/{subdir}/repodata.json")
            response.raise_for_status()
            repodata = msgspec.json.decode(response.content)
            (dest / subdir).mkdir(parents=True, exist_ok=True)
            for group in ("packages", "packages.conda"):
                for fn, record in repodata.get(group, {}).items():
                    jobs.append((subdir, fn, record["sha256"]))

        def fetch(job: tuple[str, str, str]) -> int:
            subdir, fn, sha256 = job
            digest = hashlib.sha256()
            size = 0
            with (
                client.stream("GET", f"{args.channel}/{subdir}/{fn}") as response,
                open(dest / subdir / fn, "wb") as out,
            ):
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                if args.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                errors.append(f"{subdir}/{fn}: sha256 mismatch")
            return size

        with ThreadPoolExecutor(args.workers) as pool:
            total = sum(pool.map(fetch, jobs))
    seconds = time.perf_counter() - start
    print(json.dumps({"files": len(jobs), "bytes": total, "seconds": seconds, "errors": errors}))
    return 1 if errors else 0


def _decode(args: argparse.Namespace) -> int:
    """Baseline: msgspec.json.decode of the whole document, bytes already in memory."""
    import msgspec

    data = Path(args.file).read_bytes()
    start = time.perf_counter()
    doc = msgspec.json.decode(data)
    seconds = time.perf_counter() - start
    records = len(doc.get("packages", {})) + len(doc.get("packages.conda", {}))
    print(json.dumps({"seconds": seconds, "records": records, "bytes": len(data)}))
    return 0


def _profile_mirror(args: argparse.Namespace) -> int:
    """`mirror` under cProfile. Not `python -m cProfile -m mirror`: mirror's main() ends with
    os._exit, so cProfile would never write its file; mirror.cli.run() returns instead."""
    import cProfile

    from mirror.cli import run

    profiler = cProfile.Profile()
    code: int = profiler.runcall(run, args.mirror_args)
    profiler.dump_stats(args.out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as mirror.cli.main does: py-rattler may crash in interpreter teardown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.benchlib")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("bare-fetch", help="parallel httpx fetch of a channel's files")
    fetch.add_argument("--channel", required=True)
    fetch.add_argument("--subdir", action="append", required=True)
    fetch.add_argument("--dest", required=True)
    fetch.add_argument("--workers", type=int, default=8)
    fetch.add_argument("--fsync", action="store_true")
    fetch.set_defaults(handler=_bare_fetch)
    decode = sub.add_parser("decode", help="time msgspec.json.decode of a file")
    decode.add_argument("file")
    decode.set_defaults(handler=_decode)
    profile = sub.add_parser("profile-mirror", help="run `mirror ARGS...` under cProfile")
    profile.add_argument("out", help="where to write the cProfile stats")
    profile.add_argument("mirror_args", nargs=argparse.REMAINDER)
    profile.set_defaults(handler=_profile_mirror)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def last_json_line(text: str) -> dict[str, Any]:
    """The JSON summary a helper child prints as its last line."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise ValueError("no JSON summary in the child's output")


if __name__ == "__main__":
    sys.exit(main())
