"""The record gate's fuzzer, run longer: tests/unit/test_gate_fuzz.py with more examples.

The suite runs it with a fixed seed and 150 examples per property (a few seconds); this runs
--examples per property, with a fresh random seed unless --fixed (hypothesis prints the seed
of any failure, and `--hypothesis-seed=N` reproduces it).

Run from the repository root:
    python -m tests.bench.fuzz_gate [--examples 5000] [--fixed] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tests.bench.benchlib import PYTHON, REPO

TESTS = "tests/unit/test_gate_fuzz.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="per property")
    parser.add_argument("--fixed", action="store_true", help="the suite's fixed seed")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest")
    args = parser.parse_args(argv)
    env = dict(os.environ, MIRROR_FUZZ_EXAMPLES=str(args.examples))
    if not args.fixed:
        env["MIRROR_FUZZ_RANDOM"] = "1"
    command = [PYTHON, "-m", "pytest", TESTS, "-q", "-p", "no:cacheprovider",
               "--timeout=0", *args.pytest_args]  # fmt: skip
    started = time.monotonic()
    code = subprocess.call(command, cwd=REPO, env=env)
    print(f"{args.examples} examples per property in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
