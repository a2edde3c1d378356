"""Benchmark: syncing a generated 2,000-package channel through a faulty upstream.

The upstream of bench_sync.py (built once and cached under --workdir) is served by
tests.support.upstream_server.UpstreamServer with a seeded random share of ALL requests
(repodata and packages) faulted, each with a random kind: 500, 503, reset, truncate,
corrupt, wrong_length, slow, not_json, empty_repodata. Each tool runs once per rate into a
fresh target:
  - `mirror sync` (the real CLI, 8 workers) with the default `retries: 4`, and with
    `retries: 8`; `retry_backoff_s: 0.1` for both (the default 1 s only adds sleeping);
  - conda-mirror 0.10.0 --num-threads 1 (its fastest setting), once per subdir, if installed.

For each run the table shows the exit code, the packages published (listed in the target's
repodata.json with their file present) against those selected (all upstream packages),
bad bytes (package files in the target whose sha256 is not upstream's, and published records
that differ from upstream's), repodata records against package files present, and wall time.

Run from the repository root:
    python -m tests.bench.bench_faults [--rates 0.09,0.30] [--seed N] [--workdir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.bench_sync import (
    CHANNEL,
    FULL,
    QUICK,
    SEED,
    SUBDIRS,
    WORKERS,
    Channel,
    ensure_upstream,
)
from tests.bench.benchlib import (
    CONDA_MIRROR,
    PYTHON,
    child_env,
    fmt_s,
    markdown_table,
    run_child,
    warm_server,
)
from tests.support.upstream_server import FAULT_KINDS, UpstreamServer

KINDS = tuple(sorted(FAULT_KINDS - {"404"}))
SLOW_DELAY_S = 0.2
BACKOFF_S = 0.1
TIMEOUT_S = 600.0
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")


@dataclass(frozen=True)
class Outcome:
    tool: str
    rate: float
    exit_codes: tuple[int, ...]
    published: int
    selected: int
    bad_files: int
    bad_records: int
    records: int
    files: int
    faults: int
    seconds: float


def inspect(target: Path, channel: Channel) -> tuple[int, int, int, int, int]:
    """published, bad files, bad records, records listed, package files present."""
    published = bad_files = bad_records = records = files = 0
    for subdir, upstream in channel.items():
        folder = target / subdir
        on_disk = (
            {p.name: p for p in folder.iterdir() if p.name.endswith(PACKAGE_SUFFIXES)}
            if folder.is_dir()
            else {}
        )
        files += len(on_disk)
        for name, path in on_disk.items():
            want = upstream.get(name)
            if want is None or hashlib.sha256(path.read_bytes()).hexdigest() != want["sha256"]:
                bad_files += 1
        try:
            doc = json.loads((folder / "repodata.json").read_bytes())
        except (OSError, ValueError):
            continue
        listed = {**doc.get("packages", {}), **doc.get("packages.conda", {})}
        records += len(listed)
        published += sum(1 for name in listed if name in on_disk)
        for name, record in listed.items():
            record = {k: v for k, v in record.items() if k != "indexed_timestamp"}
            if upstream.get(name) != record:
                bad_records += 1
    return published, bad_files, bad_records, records, files


def run_mirror(server: UpstreamServer, out: Path, retries: int) -> tuple[tuple[int, ...], float]:
    config = out / "mirror.yaml"
    config.write_text(
        f"root: {out / 'channels'}\nstate_dir: {out / 'state'}\nworkers: {WORKERS}\n"
        f"retries: {retries}\nretry_backoff_s: {BACKOFF_S}\n"
        f"channels:\n  bench:\n    upstream: {server.url}/{CHANNEL}\n"
        f"    subdirs: [{', '.join(SUBDIRS)}]\n"
    )
    cmd = [PYTHON, "-m", "mirror", "sync", "--config", str(config)]
    run = run_child(cmd, out / "mirror.log", env=child_env(), timeout=TIMEOUT_S)
    return (run.returncode,), run.seconds


def run_conda_mirror(server: UpstreamServer, out: Path) -> tuple[tuple[int, ...], float]:
    """conda-mirror takes one --platform per run: a user mirroring two subdirs runs it twice."""
    (out / "tmp").mkdir(parents=True)
    codes, seconds = [], 0.0
    for subdir in SUBDIRS:
        run = run_child(
            [
                CONDA_MIRROR, "--upstream-channel", f"{server.url}/{CHANNEL}",
                "--target-directory", str(out / "channels" / "bench"),
                "--temp-directory", str(out / "tmp"), "--platform", subdir,
                "--num-threads", "1", "--no-progress",
            ],
            out / f"conda-mirror-{subdir}.log",
            env=child_env(),
            timeout=TIMEOUT_S,
        )  # fmt: skip
        codes.append(run.returncode)
        seconds += run.seconds
    return tuple(codes), seconds


def one_run(
    server: UpstreamServer, channel: Channel, out: Path, tool: str, rate: float, seed: int
) -> Outcome:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    server.clear_log()
    server.set_fault_rate(rate, KINDS, seed)
    if tool.startswith("conda-mirror"):
        codes, seconds = run_conda_mirror(server, out)
    else:
        codes, seconds = run_mirror(server, out, retries=int(tool.rsplit(" ", 1)[-1]))
    server.clear_faults()
    faults = sum(1 for r in server.requests if r.fault is not None)
    published, bad_files, bad_records, records, files = inspect(out / "channels" / "bench", channel)
    selected = sum(len(r) for r in channel.values())
    return Outcome(
        tool, rate, codes, published, selected, bad_files, bad_records, records, files, faults,
        seconds,
    )  # fmt: skip


def table(outcomes: list[Outcome]) -> str:
    rows = [
        [
            o.tool,
            f"{o.rate:.0%}",
            "/".join(map(str, o.exit_codes)),
            f"{o.published} / {o.selected}",
            f"{o.bad_files} files, {o.bad_records} records",
            f"{o.records} / {o.files}",
            o.faults,
            fmt_s(o.seconds),
        ]
        for o in outcomes
    ]
    headers = [
        "tool", "fault rate", "exit code", "published / selected", "bad bytes published",
        "repodata records / files present", "faults injected", "wall s",
    ]  # fmt: skip
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rates", default="0.09,0.30", help="fault rates (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="fault seed (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.packages} packages")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    workdir = args.workdir.resolve() / "sync"  # the upstream is bench_sync's, cached
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base, channel = ensure_upstream(workdir, QUICK if args.quick else FULL, SEED)
    tools = ["mirror, retries 4", "mirror, retries 8"]
    if Path(CONDA_MIRROR).exists():
        tools.append("conda-mirror 0.10.0 --num-threads 1")
    else:
        print("conda-mirror is not installed (pip install conda-mirror==0.10.0): skipped")
    outcomes: list[Outcome] = []
    with UpstreamServer(base, slow_delay=SLOW_DELAY_S) as server:
        paths = [f"/{CHANNEL}/{s}/{fn}" for s, records in channel.items() for fn in records]
        warm_server(server.url, paths)
        for rate in rates:
            for tool in tools:
                slug = "".join(c if c.isalnum() else "-" for c in tool)
                out = workdir.parent / "faults" / f"{slug}-{rate}"
                outcome = one_run(server, channel, out, tool, rate, args.seed)
                outcomes.append(outcome)
                print(f"{tool} at {rate:.0%}: exit {outcome.exit_codes}, "
                      f"{outcome.seconds:.1f} s", flush=True)  # fmt: skip
        if server.errors:
            print(f"server errors: {server.errors[:3]}", file=sys.stderr)
    files = sum(len(r) for r in channel.values())
    print(f"\n### syncing {files} packages through a faulty upstream (seed {args.seed})\n")
    print(table(outcomes))
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        payload: dict[str, Any] = {"outcomes": [o.__dict__ for o in outcomes]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
