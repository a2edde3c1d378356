"""The long crash-consistency run: SIGKILL sync, index and the daemon at N random moments.

    python -m tests.bench.crash_long [--points 200] [--seed 1] [--workdir /tmp/mirror-crash]

Prints one line per kill point and a summary; exits 1 if any point failed (the seed and the
point number replay it: the same seed gives the same sequence of runs and delays).
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from pathlib import Path

from tests.support.crash_harness import KillPoint, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mirror-crash"))
    args = parser.parse_args(argv)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    started = time.monotonic()

    def report(point: KillPoint) -> None:
        state = "ok" if point.ok else f"FAILED {point.after_kill + point.after_recovery}"
        finished = "killed" if point.exit_code is None else f"finished ({point.exit_code})"
        print(f"{point.number:4d} {point.mode:7s} {point.delay_s:6.3f} s {finished:14s} {state}",
              flush=True)  # fmt: skip

    points = run(args.workdir, args.seed, args.points, report)
    failed = [p for p in points if not p.ok]
    killed = Counter(p.mode for p in points if p.exit_code is None)
    finished = sum(1 for p in points if p.exit_code is not None)
    seconds = time.monotonic() - started
    print(
        f"\n{len(points)} kill points (seed {args.seed}) in {seconds:.0f} s: {len(failed)} "
        f"failed; killed mid-run: {dict(killed)}; finished before the kill: {finished}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
