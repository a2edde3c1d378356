"""Benchmark: mirroring linux-64 from an upstream 50 ms away, side by side in one run.

A CDN seen from a site answers every request a round trip later; a client that keeps few
requests in flight spends its time waiting. The upstream is bench_sync.py's generated channel
(986 packages: 674 in linux-64, 5-200 KB of incompressible payload each; built once and cached
under --workdir), served by tests.support.upstream_server.UpstreamServer on 127.0.0.1 with
--latency-ms added before every answer. Only linux-64 is mirrored. Compared, alternating the
order each round, each in a fresh target directory, each a child process:

  - `mirror sync` with default settings (adaptive per-host concurrency, from workers: 4 up to
    max_connections_per_host: 32);
  - `mirror sync` held at 4 requests at once (max_connections_per_host: 4): the fixed pool of
    4 workers mirror had before, for reference (--no-fixed skips it);
  - conda-mirror 0.10.0 --platform linux-64 --num-threads 1 (`pip install
    conda-mirror==0.10.0`; its downloads are sequential whatever --num-threads says, and 1 is
    its fastest setting, see bench_sync.py).

Each row shows the median wall time, min / max, conda-mirror's median over the row's, the
most requests the server had in flight at once, 503s answered, and a check of the target
(every file present with upstream's sha256, repodata.json listing exactly upstream's files).

Run from the repository root:
    python -m tests.bench.bench_latency [--rounds 5] [--latency-ms 50] [--workdir DIR]
                                        [--packages 986] [--no-fixed] [--json OUT]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.bench.bench_sync import CHANNEL, SEED, Channel, Sizes, check_tree, ensure_upstream
from tests.bench.benchlib import (
    CONDA_MIRROR,
    PYTHON,
    ChildRun,
    Sample,
    Samples,
    Summary,
    child_env,
    fmt_ratio,
    fmt_s,
    markdown_table,
    rotated,
    rows_json,
    run_child,
    warm_server,
    write_json,
)
from tests.support.upstream_server import UpstreamServer

SUBDIR = "linux-64"
ADAPTIVE = "mirror sync, defaults (adaptive, 4 up to 32 per host)"
FIXED = "mirror sync, 4 at once (max_connections_per_host: 4)"
CONDA_MIRROR_ROW = "conda-mirror 0.10.0 --num-threads 1"
TIMEOUT_S = 900.0


def _require(run: ChildRun, what: str) -> None:
    if run.returncode != 0 or run.timed_out:
        tail = "\n".join(run.output().splitlines()[-20:])
        raise SystemExit(f"{what} failed (exit {run.returncode}); see {run.log}:\n{tail}")


def _sample(run: ChildRun, server: UpstreamServer, problems: list[str]) -> Sample:
    refused = sum(1 for r in server.requests if r.status in (429, 503))
    extra = {"peak_in_flight": server.peak_in_flight, "refused": refused}
    return Sample(run.seconds, run.max_rss_bytes, problems, extra)


def run_mirror(
    server: UpstreamServer, channel: Channel, out: Path, samples: Samples, *, fixed: bool
) -> str:
    config = out / "mirror.yaml"
    cap = "max_connections_per_host: 4\n" if fixed else ""
    config.write_text(
        f"root: {out / 'channels'}\nstate_dir: {out / 'state'}\n{cap}"
        f"channels:\n  bench:\n    upstream: {server.url}/{CHANNEL}\n    subdirs: [{SUBDIR}]\n"
    )
    server.clear_log()
    run = run_child(
        [PYTHON, "-m", "mirror", "sync", "--config", str(config)],
        out / "sync.log",
        env=child_env(),
        timeout=TIMEOUT_S,
    )
    _require(run, "mirror sync")
    problems = check_tree(out / "channels" / "bench", {SUBDIR: channel[SUBDIR]}, published=True)
    row = FIXED if fixed else ADAPTIVE
    samples[row].append(_sample(run, server, problems))
    return row


def run_conda_mirror(server: UpstreamServer, channel: Channel, out: Path, samples: Samples) -> str:
    target, temp = out / "target", out / "tmp"
    temp.mkdir(parents=True)
    server.clear_log()
    run = run_child(
        [
            CONDA_MIRROR, "--upstream-channel", f"{server.url}/{CHANNEL}",
            "--target-directory", str(target), "--temp-directory", str(temp),
            "--platform", SUBDIR, "--num-threads", "1", "--no-progress",
        ],
        out / "conda-mirror.log",
        env=child_env(),
        timeout=TIMEOUT_S,
    )  # fmt: skip
    _require(run, "conda-mirror")
    problems = check_tree(target, {SUBDIR: channel[SUBDIR]}, published=True)
    samples[CONDA_MIRROR_ROW].append(_sample(run, server, problems))
    return CONDA_MIRROR_ROW


def report(samples: Samples, files: int, latency_ms: float) -> dict[str, Any]:
    summaries = {row: Summary.of(s.seconds for s in runs) for row, runs in samples.items()}
    conda_mirror = summaries[CONDA_MIRROR_ROW].median
    rows = []
    for row, runs in samples.items():
        summary = summaries[row]
        problems = sorted({p for s in runs for p in s.problems})
        peaks = sorted(s.extra["peak_in_flight"] for s in runs)
        rows.append(
            [
                row,
                fmt_s(summary.median),
                f"{fmt_s(summary.minimum)} / {fmt_s(summary.maximum)}",
                fmt_ratio(conda_mirror / summary.median),
                f"{peaks[0]}-{peaks[-1]}" if peaks else "",
                sum(s.extra["refused"] for s in runs),
                "; ".join(problems) if problems else "ok",
            ]
        )
    n = summaries[ADAPTIVE].n
    print(
        f"\n### {files} linux-64 files from an upstream {latency_ms:g} ms away, {n} rounds "
        "(medians; speed-up = conda-mirror's median / the row's median)\n"
    )
    headers = ["tool", "median s", "min / max s", "speed-up", "peak in flight", "503s", "check"]
    print(markdown_table(headers, rows))
    ratio = conda_mirror / summaries[ADAPTIVE].median
    print(
        "\n| target | measured | met |\n| --- | ---: | --- |\n"
        f"| mirror (defaults) >= 10x faster than conda-mirror 0.10 | {ratio:.2f}x | "
        f"{'yes' if ratio >= 10 else 'NO'} |"
    )
    return {
        "files": files,
        "latency_ms": latency_ms,
        "rows": rows_json(samples, summaries),
        "speedup": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-bench"))
    parser.add_argument("--packages", type=int, default=986, help="of which ~68%% linux-64")
    parser.add_argument("--no-fixed", action="store_true", help="skip the fixed-4 mirror row")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)
    if not Path(CONDA_MIRROR).exists():
        raise SystemExit("conda-mirror is missing: pip install conda-mirror==0.10.0")
    workdir = args.workdir.resolve() / "sync"  # shares bench_sync's cache of generated channels
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base, channel = ensure_upstream(workdir, Sizes(args.packages), SEED)
    rows = [ADAPTIVE, *([] if args.no_fixed else [FIXED]), CONDA_MIRROR_ROW]
    samples: Samples = {row: [] for row in rows}
    tools: list[tuple[str, Callable[[UpstreamServer, Channel, Path, Samples], str]]] = [
        ("mirror", partial(run_mirror, fixed=False)),
        ("mirror-4", partial(run_mirror, fixed=True)),
        ("conda-mirror", run_conda_mirror),
    ]
    if args.no_fixed:
        del tools[1]
    with UpstreamServer(base, latency_s=args.latency_ms / 1000) as server:
        paths = [f"/{CHANNEL}/{SUBDIR}/{fn}" for fn in channel[SUBDIR]]
        warm_server(server.url, paths)
        for round_no in range(args.rounds):
            for name, tool in rotated(tools, round_no):
                out = workdir / "latency-runs" / f"round-{round_no}" / name
                if out.exists():
                    shutil.rmtree(out)
                out.mkdir(parents=True)
                row = tool(server, channel, out, samples)
                print(
                    f"round {round_no + 1}/{args.rounds}: {row}: {samples[row][-1].seconds:.2f} s",
                    flush=True,
                )
                shutil.rmtree(out)
        if server.errors:
            print(f"server errors: {server.errors[:3]}", file=sys.stderr)
    results = report(samples, len(channel[SUBDIR]), args.latency_ms)
    elapsed = time.perf_counter() - started
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if args.json:
        results["wall_seconds"] = elapsed
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
