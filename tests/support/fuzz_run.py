"""What the end-to-end fuzzers share: their hypothesis settings and the tally of a long run.

By default a fixed seed (`derandomize`) and a bounded number of examples per test, so the suite
is repeatable and fast. tests/bench/fuzz_e2e.py runs the same tests longer: it sets
MIRROR_FUZZ_E2E_EXAMPLES (examples per test), MIRROR_FUZZ_RANDOM=1 with pytest's
`--hypothesis-seed`, and MIRROR_FUZZ_STATS (a file each example appends one JSON line to).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

EXAMPLES_ENV = "MIRROR_FUZZ_E2E_EXAMPLES"
RANDOM_ENV = "MIRROR_FUZZ_RANDOM"
STATS_ENV = "MIRROR_FUZZ_STATS"
NO_SHRINK_ENV = "MIRROR_FUZZ_NO_SHRINK"  # report the first failure as found, unshrunk
KEEP_ENV = "MIRROR_FUZZ_KEEP"  # a folder: each failing example's files are copied there


def fuzz_settings(default_examples: int) -> settings:
    examples = int(os.environ.get(EXAMPLES_ENV) or default_examples)
    phases = [p for p in Phase if not (p is Phase.shrink and os.environ.get(NO_SHRINK_ENV))]
    return settings(
        phases=phases,
        max_examples=examples,
        derandomize=not os.environ.get(RANDOM_ENV),
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def tally(test: str, checks: int, outcome: Mapping[str, int]) -> None:
    """One example's figures for the long run's report (nothing when not asked for)."""
    path = os.environ.get(STATS_ENV)
    if not path:
        return
    line = json.dumps({"test": test, "checks": checks, "outcome": dict(outcome)})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def keep_failure(folder: Path) -> str:
    """Copy a failing example's folder where MIRROR_FUZZ_KEEP says; say where (or nothing)."""
    keep = os.environ.get(KEEP_ENV)
    if not keep:
        return ""
    target = Path(keep) / f"{folder.name}-{time.time_ns()}"
    shutil.copytree(folder, target, symlinks=True)
    return f"\n  kept in {target}"
