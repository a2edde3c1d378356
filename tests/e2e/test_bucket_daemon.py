"""The daemon, run for real, with its tree in a bucket (moto behind the checking gateway): drops
are published into the bucket, two daemons on one bucket take turns by the writer lease, and a
daemon whose lease was taken over publishes nothing over the newer writer's index."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mirror.adapters.objectstore import LEASE_KEY, Bucket
from tests.support.bucket_site import PREFIX, bucket_config, index_problems, published
from tests.support.builder import PackageSpec, package_bytes
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.rattler_client import solve_and_install
from tests.support.s3_server import S3Bucket, environment

SUBDIRS = ["linux-64", "noarch"]
TTL_S = 6  # the shortest lease the config allows: renewed every 2 s


def drop_site(base: Path, s3: S3Bucket, *, port: int | None = None, state: str = "state") -> Path:
    """A local channel fed by a drop folder, its tree in the bucket (one per host: `state`)."""
    drops = base / f"drops-{state}"
    drops.mkdir(parents=True, exist_ok=True)
    top = {"metrics": {"listen": f"127.0.0.1:{port}"}} if port else {}
    return bucket_config(
        base, s3,
        {"local": {"subdirs": SUBDIRS, "drop_folders": [drops.name]}},
        storage={"lease_ttl_s": TTL_S}, state_dir=state, name=f"{state}.yaml",
        watch={"settle_s": 0.2, "debounce_s": 0.05}, **top,
    )  # fmt: skip


def drop(base: Path, state: str, spec: PackageSpec) -> None:
    (base / f"drops-{state}" / spec.filename).write_bytes(package_bytes(spec))


def test_a_drop_published_into_a_bucket_by_the_daemon_installs_over_plain_http(
    tmp_path: Path, s3: S3Bucket
) -> None:
    config = drop_site(tmp_path, s3, port=free_port())
    bucket = s3.bucket(PREFIX)
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        daemon.start(env=environment())
        drop(tmp_path, "state", PackageSpec("libdrop", "1.0", build="h0_0", subdir="linux-64"))
        drop(tmp_path, "state", PackageSpec("dropapp", "2.0", depends=("libdrop >=1",)))
        wait_for(lambda: published(bucket, "local", "noarch") == {"dropapp-2.0-0.conda"})
        wait_for(lambda: published(bucket, "local", "linux-64") == {"libdrop-1.0-h0_0.conda"})
        code, _ = daemon.stop()
    assert code == 0, daemon.text()
    assert index_problems(bucket) == []
    assert not list((tmp_path / "drops-state").iterdir())  # taken in, not copied
    s3.make_public(PREFIX)
    installed = solve_and_install(
        [f"{s3.http_base(PREFIX)}/local"],
        ["dropapp"],
        SUBDIRS,
        tmp_path / "env",
        tmp_path / "cache",
    )
    assert installed == {"dropapp", "libdrop"}
    assert (tmp_path / "env" / "conda-meta").is_dir()


def lease_holder(bucket: Bucket) -> dict[str, object]:
    document: dict[str, object] = json.loads(bucket.get_bytes(LEASE_KEY))
    return document


def test_of_two_daemons_on_one_bucket_one_writes_the_other_stands_by_then_takes_over(
    tmp_path: Path, s3: S3Bucket
) -> None:
    bucket = s3.bucket(PREFIX)
    first_config = drop_site(tmp_path, s3, state="host-a")
    second_config = drop_site(tmp_path, s3, state="host-b")
    with (
        DaemonProcess(first_config, tmp_path / "a.log") as first,
        DaemonProcess(second_config, tmp_path / "b.log") as second,
    ):
        first.start(env=environment())
        assert first.proc is not None
        second.start(env=environment(), ready="standing by")
        standby = second.text()
        # who holds the tree and until when, from the lease object
        assert f"(pid {first.proc.pid})" in standby, standby
        assert re.search(r"valid until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", standby), standby
        assert "daemon ready" not in standby

        drop(tmp_path, "host-a", PackageSpec("from-a", "1.0"))
        wait_for(lambda: "from-a-1.0-0.conda" in published(bucket, "local", "noarch"))
        drop(tmp_path, "host-b", PackageSpec("from-b", "1.0"))  # waits for host b's turn
        code, _ = first.stop()
        assert code == 0, first.text()
        assert lease_holder(bucket)["released"] is True

        second.wait_for_log("daemon ready", timeout=TTL_S * 2)
        assert second.proc is not None and second.proc.poll() is None, second.text()
        wait_for(lambda: "from-b-1.0-0.conda" in published(bucket, "local", "noarch"))
        assert lease_holder(bucket)["pid"] == second.proc.pid
        code, _ = second.stop()
        assert code == 0, second.text()
    assert published(bucket, "local", "noarch") == {"from-a-1.0-0.conda", "from-b-1.0-0.conda"}
    assert index_problems(bucket) == []
