"""Crash consistency: SIGKILL sync, index and the daemon at random moments, then check the tree.

Each kill point (seeded, so a failure replays with the same seed and index):
1. changes something so the next run has work: the upstream gains, loses and replaces
   packages (sync), files appear in the local channel's folder (index), or packages are
   dropped into the drop folder (daemon);
2. starts that run as a real subprocess and SIGKILLs it after a random delay;
3. checks that every index a client could read names only files that are there and right
   (`VerifyReport.serving_safely`: stale copies, temp files and not-yet-indexed files are what
   a crash may leave, and the next run clears them);
4. runs the same kind of work to completion and checks that `verify` is then fully clean.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import local_tree
from mirror.health.verify import verify
from mirror.reports import VerifyReport
from tests.support.builder import PackageSpec, build_channel, build_package, package_bytes
from tests.support.daemon_proc import wait_for
from tests.support.upstream_server import UpstreamServer

REPO = Path(__file__).resolve().parents[2]
SUBDIRS = ("linux-64", "noarch")
MODES = ("sync", "index", "daemon")


@dataclass
class KillPoint:
    number: int
    mode: str
    delay_s: float
    exit_code: int | None  # None: killed before it finished (the usual case)
    after_kill: list[str] = field(default_factory=list)  # problems a client could hit
    after_recovery: list[str] = field(default_factory=list)  # anything left after a full run

    @property
    def ok(self) -> bool:
        return not self.after_kill and not self.after_recovery


class Harness:
    def __init__(self, workdir: Path, seed: int, packages: int = 160) -> None:
        self.base = workdir
        self.rng = random.Random(seed)
        self.seed = seed
        self.pool = [
            PackageSpec(f"pkg{i:03d}", f"1.{v}", build="h0_0", subdir=SUBDIRS[i % 2],
                        files={f"share/pkg{i:03d}/{v}.txt": bytes(200 + i)})
            for i in range(packages) for v in range(2)
        ]  # fmt: skip
        self.upstream = workdir / "upstream"
        self.local = workdir / "tree" / "local"
        self.drops = workdir / "drops"
        self.state = workdir / "state"
        self.config = workdir / "mirror.yaml"
        self.server: UpstreamServer | None = None
        self._drop_counter = 0
        self.durations = {mode: 1.0 for mode in MODES}

    # -- set-up -------------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        self.drops.mkdir(parents=True)
        for subdir in SUBDIRS:
            (self.local / subdir).mkdir(parents=True)
        self._publish_upstream()
        self.server = UpstreamServer(self.upstream, latency_s=0.01).start()
        self.config.write_text(yaml.safe_dump({
            "root": "tree", "state_dir": "state", "retry_backoff_s": 0.01, "workers": 4,
            # the upstream deletes and replaces files every run by design: no guard may stop it
            "max_delete_fraction": 1.0, "max_replace_fraction": 1.0,
            "watch": {"settle_s": 0.3, "debounce_s": 0.05}, "recompress_after_s": 0.5,
            "channels": {
                "up": {"upstream": self.server.url, "subdirs": list(SUBDIRS)},
                "local": {"subdirs": list(SUBDIRS), "drop_folders": ["drops"]},
            },
        }))  # fmt: skip
        self._run(["sync"], check=True)
        self._run(["index", str(self.local), "--state-dir", str(self.state)], check=True)
        return self

    def __exit__(self, *_: object) -> None:
        if self.server is not None:
            self.server.close()

    def _publish_upstream(self) -> None:
        chosen = self.rng.sample(self.pool, k=len(self.pool) // 2)
        # a replaced file under the same name: new bytes for an existing build
        if self.rng.random() < 0.3:
            victim = self.rng.choice(chosen)
            chosen.remove(victim)
            chosen.append(PackageSpec(victim.name, victim.version, build=victim.build,
                                      subdir=victim.subdir,
                                      files={"share/x": self.rng.randbytes(64)}))  # fmt: skip
        if self.upstream.exists():
            for path in self.upstream.rglob("*"):
                if path.is_file():
                    path.unlink()
        build_channel(self.upstream, chosen, extra_subdirs=SUBDIRS)

    # -- one kill point -------------------------------------------------------------------------

    def kill_point(self, number: int) -> KillPoint:
        mode = MODES[number % len(MODES)]  # each kind in turn; the moments are random
        # somewhere within how long this kind of run took last time, so most kills land
        # mid-run (start-up, fetch, download, publish, prune) rather than after it
        delay = self.rng.uniform(0.0, self.durations[mode])
        prepare: Callable[[], list[str]] = getattr(self, f"_prepare_{mode}")
        args = prepare()
        exit_code = self._run_and_kill(args, delay)
        point = KillPoint(number, mode, delay, exit_code)
        point.after_kill = [str(p) for p in self._verify().problems
                            if p.kind not in ("stale_index", "temp_file", "unindexed")]  # fmt: skip
        self._complete(mode)
        point.after_recovery = [str(p) for p in self._verify().problems]
        return point

    def _prepare_sync(self) -> list[str]:
        self._publish_upstream()
        return ["sync", "--config", str(self.config)]

    def _prepare_index(self) -> list[str]:
        # new files only: deleting or rewriting a published file is damage done by hand, which
        # the published index reflects until something re-indexes (not what a crash can cause)
        for spec in self.rng.sample(self.pool, k=self.rng.randint(5, 40)):
            if not (self.local / spec.subdir / spec.filename).exists():
                build_package(spec, self.local / spec.subdir)
        return ["index", str(self.local), "--state-dir", str(self.state)]

    def _prepare_daemon(self) -> list[str]:
        for _ in range(self.rng.randint(5, 60)):
            self._drop_counter += 1
            spec = PackageSpec(f"drop{self._drop_counter:05d}", "1.0", build="h0_0",
                               subdir=self.rng.choice(SUBDIRS))  # fmt: skip
            (self.drops / spec.filename).write_bytes(package_bytes(spec))
        return ["daemon", "--config", str(self.config)]

    def _run_and_kill(self, args: list[str], delay_s: float) -> int | None:
        proc = subprocess.Popen([sys.executable, "-m", "mirror", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None

    def _complete(self, mode: str) -> None:
        """The same kind of work, to the end; its duration calibrates the next kill."""
        started = time.monotonic()
        self._finish(mode)
        if mode != "daemon":  # the daemon is killed while it works, not when it is done
            self.durations[mode] = max(0.2, time.monotonic() - started)

    def _finish(self, mode: str) -> None:
        if mode == "daemon":
            proc = subprocess.Popen([sys.executable, "-m", "mirror", "daemon", "--config",
                                     str(self.config)], cwd=REPO, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                wait_for(lambda: not any(self.drops.iterdir()) and self._verify().ok,
                         timeout=60, interval=0.1)  # fmt: skip
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
        elif mode == "sync":
            self._run(["sync", "--config", str(self.config)], check=True)
        else:
            self._run(["index", str(self.local), "--state-dir", str(self.state)], check=True)

    def _run(self, args: list[str], *, check: bool) -> int:
        if args[0] in ("sync", "verify") and "--config" not in args:
            args = [*args, "--config", str(self.config)]
        result = subprocess.run([sys.executable, "-m", "mirror", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"mirror {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stdout}{result.stderr}")  # fmt: skip
        return result.returncode

    def _verify(self) -> VerifyReport:
        targets = [(c, s) for c in ("up", "local") for s in SUBDIRS]
        with Catalog(self.state / "catalog.sqlite") as catalog:
            return verify(local_tree(self.base / "tree"), catalog, targets, full=True)


def run(
    workdir: Path, seed: int, points: int, report: Callable[[KillPoint], None]
) -> list[KillPoint]:
    results = []
    with Harness(workdir, seed) as harness:
        for number in range(points):
            point = harness.kill_point(number)
            report(point)
            results.append(point)
    return results
