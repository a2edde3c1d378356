"""SIGKILL at random moments never leaves an index naming a missing or wrong file, and the
next run completes (short variant; tests/bench/crash_long.py runs 200 kill points)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import crash_harness

SEED = 5  # point 9 once caught a sync replacing a published file in place (fixed)
POINTS = 12


@pytest.mark.timeout(600)
def test_kill_9_at_random_moments_leaves_a_tree_that_serves_safely_and_recovers(
    tmp_path: Path,
) -> None:
    points = crash_harness.run(tmp_path, SEED, POINTS, report=lambda point: None)
    assert len(points) == POINTS
    assert {p.mode for p in points} == set(crash_harness.MODES)  # sync, index and the daemon
    failures = [p for p in points if not p.ok]
    assert failures == [], "\n".join(
        f"seed {SEED} point {p.number} ({p.mode}, killed after {p.delay_s:.3f} s): "
        f"{p.after_kill + p.after_recovery}"
        for p in failures
    )
