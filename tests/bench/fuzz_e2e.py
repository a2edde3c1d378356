"""The end-to-end fuzzers, run longer: tests/e2e/test_fuzz_sync.py and test_fuzz_packages.py
with more examples per test and random seeds, and a report of what ran.

The suite runs them with a fixed seed and bounded examples (under a minute in all); this runs
--examples per test for each seed (random ones unless --seed), in a pytest child each, and
prints per test the examples run, the invariant checks that passed and what the examples did
(records published, refused, failed, files quarantined, exit codes 1). A failure is shrunk by
hypothesis unless --no-shrink, and its folder kept under --keep; rerun it with the printed
seed (`--seed S`) or the `@reproduce_failure` blob hypothesis prints.

Run from the repository root:
    python -m tests.bench.fuzz_e2e [--examples 1000] [--seed S | --seeds 3] [--tests sync,index]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from tests.bench.benchlib import PYTHON, REPO, markdown_table
from tests.support.fuzz_run import EXAMPLES_ENV, KEEP_ENV, NO_SHRINK_ENV, RANDOM_ENV, STATS_ENV

_SYNC, _PACKAGES = "tests/e2e/test_fuzz_sync.py", "tests/e2e/test_fuzz_packages.py"
TESTS = {
    "sync": f"{_SYNC}::test_a_sync_of_hostile_upstream_repodata_keeps_every_invariant",
    "sync-http": f"{_SYNC}::test_a_sync_of_hostile_repodata_over_http_keeps_every_invariant",
    "index": f"{_PACKAGES}::test_mirror_index_of_hostile_package_files_keeps_every_invariant",
    "drops": f"{_PACKAGES}::test_a_drop_folder_fed_hostile_package_files_keeps_every_invariant",
}


def run_seed(args: argparse.Namespace, seed: int, stats: Path) -> tuple[int, float]:
    env = dict(os.environ, **{EXAMPLES_ENV: str(args.examples), RANDOM_ENV: "1",
                              STATS_ENV: str(stats)})  # fmt: skip
    if args.no_shrink:
        env[NO_SHRINK_ENV] = "1"
    if args.keep:
        env[KEEP_ENV] = str(Path(args.keep).absolute())
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    chosen = [TESTS[name] for name in args.tests.split(",")]
    command = [PYTHON, "-m", "pytest", *chosen, "-q", "-p", "no:cacheprovider", "--timeout=0",
               f"--hypothesis-seed={seed}", "--show-capture=no", *args.pytest_args]  # fmt: skip
    started = time.monotonic()
    code = subprocess.call(command, cwd=REPO, env=env)
    return code, time.monotonic() - started


def report(stats: Path, seeds: list[int], results: list[tuple[int, float]]) -> str:
    tallies: dict[str, Counter[str]] = defaultdict(Counter)
    for line in stats.read_text().splitlines() if stats.exists() else []:
        entry = json.loads(line)
        tally = tallies[entry["test"]]
        tally["examples"] += 1
        tally["invariant checks"] += entry["checks"]
        tally.update(entry["outcome"])
    keys = ["examples", "invariant checks", "published", "refused", "failed", "quarantined",
            "document_refused", "exit_1"]  # fmt: skip
    rows = [
        [test, *(f"{tally.get(k, 0):,}" for k in keys)] for test, tally in sorted(tallies.items())
    ]
    table = markdown_table(["test", *keys], rows)
    runs = ", ".join(
        f"seed {seed}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s"
        for seed, (code, seconds) in zip(seeds, results, strict=True)
    )
    return f"{table}\n\n{runs}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="per test and seed")
    parser.add_argument("--seed", type=int, action="append", help="a seed (repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="how many random seeds otherwise")
    parser.add_argument("--tests", default=",".join(TESTS), help=f"of {', '.join(TESTS)}")
    parser.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    parser.add_argument("--keep", metavar="DIR", help="copy each failing example's files here")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest")
    args = parser.parse_args(argv)
    seeds = args.seed or [random.SystemRandom().randrange(2**32) for _ in range(args.seeds)]
    print(f"seeds {seeds}, {args.examples} examples per test and seed", flush=True)
    with tempfile.TemporaryDirectory(prefix="fuzz-e2e-stats-") as folder:
        stats = Path(folder) / "stats.jsonl"
        results = [run_seed(args, seed, stats) for seed in seeds]
        print(report(stats, seeds, results))
    return max(code for code, _ in results)


if __name__ == "__main__":
    sys.exit(main())
