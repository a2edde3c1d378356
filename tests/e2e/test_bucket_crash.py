"""SIGKILL at random moments of a sync into a bucket: no index a client can read ever names an
object that is not there, and the next run finishes the job without downloading again what
the killed run had already put in the bucket.

The moment is drawn (seeded) as a point in the run's progress, not in wall time: the kill
comes after a random number of package downloads, or once the first subdir's downloads are
done (its publish and prune), and a random extra delay, so it lands in every phase whatever
the speed of the machine.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.adapters.objectstore import Bucket
from tests.conftest import REPO, run_cli
from tests.support.bucket_site import PREFIX, bucket_config, index_problems, published
from tests.support.builder import PackageSpec, build_channel
from tests.support.daemon_proc import wait_for
from tests.support.s3_server import S3Bucket, environment
from tests.support.upstream_server import UpstreamServer

SUBDIRS = ("linux-64", "noarch")
PACKAGES = 120
PACKAGE_GLOB = "*/*-1.*"  # package files, not repodata


def pool() -> list[PackageSpec]:
    return [
        PackageSpec(f"pkg{i:03d}", f"1.{v}", build="h0_0", subdir=SUBDIRS[i % 2],
                    files={f"share/pkg{i:03d}/{v}.txt": bytes(200 + i)})
        for i in range(PACKAGES // 2) for v in range(2)
    ]  # fmt: skip


def publish_upstream(root: Path, specs: list[PackageSpec]) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            path.unlink()
    build_channel(root, specs, extra_subdirs=SUBDIRS)


def package_objects(bucket: Bucket) -> set[str]:
    return {
        key.rsplit("/", 1)[1] for key in bucket.walk("up") if key.endswith((".conda", ".tar.bz2"))
    }


def sync_killed_after(
    config: Path, server: UpstreamServer, downloads: int, extra_s: float, glob: str
) -> int | None:
    """Start `mirror sync`, SIGKILL it once `downloads` files matching `glob` were served and
    `extra_s` more passed; None if it was killed, else its exit code (it finished first)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "sync", "--config", str(config)],
        cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: server.count(glob, status=200) >= downloads or proc.poll() is not None,
            timeout=60,
            interval=0.002,
        )
        time.sleep(extra_s)
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_during_a_sync_into_a_bucket_leaves_no_index_naming_a_missing_object(
    tmp_path: Path, s3: S3Bucket, seed: int
) -> None:
    rng = random.Random(seed)
    specs = pool()
    upstream = tmp_path / "upstream"
    publish_upstream(upstream, rng.sample(specs, k=len(specs) // 2))
    bucket = s3.bucket(PREFIX)
    with UpstreamServer(upstream, latency_s=0.002) as server:
        config = bucket_config(
            tmp_path, s3, {"up": {"upstream": server.url, "subdirs": list(SUBDIRS)}},
            workers=4, max_delete_fraction=1.0,
        )  # fmt: skip
        for point in range(2):  # a first sync, then one that adds and removes packages
            if point:
                publish_upstream(upstream, rng.sample(specs, k=len(specs) // 2))
            missing = names(upstream) - package_objects(bucket)
            if rng.random() < 0.5:  # somewhere in the downloads
                glob, downloads = PACKAGE_GLOB, rng.randint(0, len(missing))
            else:  # as linux-64 (synced first) publishes, prunes, and noarch starts
                glob = "*/linux-64/*-1.*"
                downloads = len({n for n in missing if n in names(upstream / "linux-64")})
            extra_s = rng.uniform(0.0, 0.4)
            killed = sync_killed_after(config, server, downloads, extra_s, glob)
            where = (
                f"seed {seed} point {point} (killed {extra_s:.2f} s after {downloads} downloads "
                f"of {glob}: {killed})"
            )
            assert index_problems(bucket) == [], where

            finished = package_objects(bucket) & names(upstream)
            server.clear_log()
            again = run_cli(["sync", "--config", str(config)], env=environment())
            assert again.code == 0, f"{where}: {again.stderr}"
            fetched = {r.match_path.rsplit("/", 1)[1] for r in server.requests}
            assert not fetched & finished, f"{where}: downloaded again {fetched & finished}"
            assert index_problems(bucket) == [], where
            listed = published(bucket, "up", "linux-64") | published(bucket, "up", "noarch")
            assert listed == names(upstream), where
    verify = run_cli(["verify", "--full", "--config", str(config)], env=environment())
    assert verify.code == 0, verify.stdout + verify.stderr


def names(upstream: Path) -> set[str]:
    return {path.name for path in upstream.rglob("*") if path.name.endswith((".conda", ".tar.bz2"))}
