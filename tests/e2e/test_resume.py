"""A sync killed half-way resumes: what it finished is never fetched again, nothing half-written
is published, and the previous repodata serves until the new one replaces it.

The journal is the catalog plus the tree itself: each verified file is renamed into place and
recorded in the catalog every few seconds; a file that landed after the last catalog flush is
hashed on the next run (its record says what it must be), not downloaded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import local_tree
from mirror.health.verify import verify
from mirror.reports import VerifyReport
from tests.conftest import REPO, run_cli, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import UpstreamServer

PACKAGES = 120


def _packages_in(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.name.endswith((".conda", ".tar.bz2"))}


def test_a_killed_sync_resumes_without_fetching_any_finished_file_twice(tmp_path: Path) -> None:
    specs = [
        PackageSpec(f"pkg{i:03d}", "1.0", build="h0_0", subdir="linux-64",
                    files={f"share/pkg{i:03d}.txt": bytes(range(256)) * 40})
        for i in range(PACKAGES)
    ]  # fmt: skip
    build_channel(tmp_path / "upstream", specs)
    with UpstreamServer(tmp_path / "upstream", latency_s=0.05) as server:
        # two requests at once, always: the bound on files cut off mid-transfer below
        transfer = {"workers": 2, "max_connections_per_host": 2}
        config = write_config(
            tmp_path, {"up": {"upstream": server.url, "subdirs": ["linux-64"], **transfer}}
        )
        # a first, complete sync: the published repodata the interrupted run must not disturb
        tree = tmp_path / "tree" / "up" / "linux-64"
        first = run_cli(["sync", "--config", str(config)])
        assert first.code == 0, first.stderr
        before = (tree / "repodata.json").read_bytes()
        # upstream gains new builds of every package: a long run we will interrupt
        more = [
            PackageSpec(s.name, "2.0", build="h0_0", subdir="linux-64", files=s.files)
            for s in specs
        ]
        build_channel(tmp_path / "upstream", specs + more)
        server.clear_log()

        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "sync", "--config", str(config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        new_names = {s.filename for s in more}
        deadline = time.monotonic() + 60
        while len(_packages_in(tree) & new_names) < PACKAGES // 3:
            assert proc.poll() is None, "the sync finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = _packages_in(tree) & new_names
        assert PACKAGES // 3 <= len(finished) < PACKAGES

        # killed: the old repodata still serves, byte for byte, and names only good files
        assert (tree / "repodata.json").read_bytes() == before
        assert _verify(tmp_path).serving_safely

        fetched_by_first = {r.path.rsplit("/", 1)[-1] for r in server.requests if r.status == 200}
        server.clear_log()
        again = run_cli(["sync", "--config", str(config)])
        assert again.code == 0, again.stderr
        fetched_again = {r.path.rsplit("/", 1)[-1] for r in server.requests if r.status == 200}

    assert fetched_again & finished == set(), "a file the killed run finished was fetched again"
    # every new file arrived exactly once across the two runs, or twice only if in flight
    assert new_names <= (fetched_by_first | fetched_again)
    in_flight = (fetched_by_first & fetched_again) & new_names
    assert len(in_flight) <= 2  # at most one per request slot was cut off mid-transfer
    assert _packages_in(tree) >= new_names
    report = _verify(tmp_path)
    assert report.problems == [], report.problems


def _verify(base: Path) -> VerifyReport:
    with Catalog(base / "state" / "catalog.sqlite") as catalog:
        return verify(local_tree(base / "tree"), catalog, [("up", "linux-64")], full=True)
