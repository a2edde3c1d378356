"""A writer whose lease was taken over, or lapsed, cannot publish: its index writes are refused
(they are conditional on the ETag it last saw, and each first asks the lease), nothing it
writes replaces the newer writer's index, and it exits non-zero saying why."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zstandard

from mirror.adapters.objectstore import LEASE_KEY, Bucket
from mirror.adapters.objectstore.lease_record import LeaseRecord, new_record
from mirror.core.shards import SHARD_INDEX_NAME, build_shard_index, read_shard_index
from tests.conftest import REPO, run_cli
from tests.support.bucket_site import PREFIX, bucket_config, index_problems, published
from tests.support.builder import PackageSpec, build_channel, package_bytes
from tests.support.daemon_proc import DaemonProcess, wait_for
from tests.support.s3_server import S3Bucket, environment
from tests.support.upstream_server import UpstreamServer

SUBDIRS = ["linux-64", "noarch"]
FOLDER = "local/noarch"


def take_over(bucket: Bucket) -> None:
    """What a host that took the lease over writes (it is not ours: another holder)."""
    record = new_record("intruder", "host-b", 4242, datetime.now(UTC), timedelta(seconds=60))
    bucket.put_bytes(LEASE_KEY, record.to_json())


def publish_newer_index(bucket: Bucket) -> dict[str, bytes]:
    """A newer writer's index of the subdir: every index file with new bytes."""
    document = json.loads(bucket.get_bytes(f"{FOLDER}/repodata.json"))
    document["newer_writer"] = True  # clients ignore keys they do not know
    plain = json.dumps(document, indent=1).encode()
    shard_map = read_shard_index(bucket.get_bytes(f"{FOLDER}/{SHARD_INDEX_NAME}"))
    newer = {
        f"{FOLDER}/repodata.json.zst": zstandard.ZstdCompressor().compress(plain),
        f"{FOLDER}/repodata.json": plain,
        f"{FOLDER}/{SHARD_INDEX_NAME}": build_shard_index(
            "noarch", shard_map, "2099-01-01T00:00:00Z"
        ),
    }
    for key, data in newer.items():
        bucket.put_bytes(key, data)
    return newer


def tree_bytes(bucket: Bucket) -> dict[str, bytes]:
    return {key: bucket.get_bytes(key) for key in bucket.walk("") if key != LEASE_KEY}


def logged_at(log: str, text: str) -> float:
    """When the first log line holding `text` was written (seconds since the epoch)."""
    line = next(line for line in log.splitlines() if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def renewals(s3: S3Bucket) -> int:
    return sum(
        1
        for r in s3.gateway.requests_of("PUT")
        if r.path.endswith(LEASE_KEY) and "if-match" in r.headers and r.status == 200
    )


def test_a_daemon_whose_lease_was_taken_over_is_refused_its_index_write_and_exits_1(
    tmp_path: Path, s3: S3Bucket
) -> None:
    (tmp_path / "drops").mkdir()
    ttl_s = 12  # renewed every 4 s: the drop below is published between two renewals
    config = bucket_config(
        tmp_path, s3, {"local": {"subdirs": SUBDIRS, "drop_folders": ["drops"]}},
        storage={"lease_ttl_s": ttl_s}, watch={"settle_s": 0.1, "debounce_s": 0.05},
    )  # fmt: skip
    bucket = s3.bucket(PREFIX)
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        daemon.start(env=environment())
        first = PackageSpec("first", "1.0")
        (tmp_path / "drops" / first.filename).write_bytes(package_bytes(first))
        wait_for(lambda: published(bucket, "local", "noarch") == {first.filename})
        # right after one of its renewals, another host takes the tree over and publishes
        seen = renewals(s3)
        wait_for(lambda: renewals(s3) > seen, timeout=ttl_s)
        take_over(bucket)
        newer = publish_newer_index(bucket)
        late = PackageSpec("late", "1.0")
        (tmp_path / "drops" / late.filename).write_bytes(package_bytes(late))
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=ttl_s + 5)  # its next renewal finds the lease gone
    log = daemon.text()
    assert code == 1, log
    # the index write was refused on the ETag, before the lease's loss was even noticed
    assert f"s3://{s3.name}/{PREFIX}/{FOLDER}/repodata.json.zst was not written" in log, log
    assert "another writer has published since" in log
    assert "was taken over by host host-b (pid 4242)" in log, log
    # the refusal had it renew at once: it stopped without waiting for its next renewal
    assert logged_at(log, "drops failed") + 1.0 > logged_at(log, "stopping:"), log
    for key, data in newer.items():
        assert bucket.get_bytes(key) == data, key
    assert index_problems(bucket) == []
    assert LeaseRecord.from_json(bucket.get_bytes(LEASE_KEY)).holder == "intruder"  # type: ignore[union-attr]


def test_a_sync_paused_past_its_lease_cannot_publish_over_the_host_that_took_over(
    tmp_path: Path, s3: S3Bucket
) -> None:
    upstream = tmp_path / "upstream"
    build_channel(upstream, [PackageSpec(f"pkg{i}", "1.0") for i in range(6)])
    # pkg3 answers slowly, so that the pause lands while files are still coming in, even on a
    # loaded machine
    with UpstreamServer(upstream, slow_delay=3.0) as server:
        channels = {"up": {"upstream": server.url, "subdirs": ["noarch"]}}
        storage = {"lease_ttl_s": 6}
        paused = bucket_config(
            tmp_path, s3, channels, storage=storage, state_dir="a", name="a.yaml"
        )
        other = bucket_config(tmp_path, s3, channels, storage=storage, state_dir="b", name="b.yaml")
        server.add_fault("*/pkg3-1.0-0.conda", "slow")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "sync", "--config", str(paused)],
            cwd=REPO, env={**environment(), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: server.count("*/pkg3-1.0-0.conda") > 0)
            proc.send_signal(signal.SIGSTOP)  # a VM paused, a process swapped out
            bucket = s3.bucket(PREFIX)
            lease = LeaseRecord.from_json(bucket.get_bytes(LEASE_KEY))
            assert lease is not None and lease.pid == proc.pid
            time.sleep(max(0.0, (lease.expires_at - datetime.now(UTC)).total_seconds() + 1.0))
            taken = run_cli(["sync", "--config", str(other)], env=environment())
            assert taken.code == 0, taken.stderr
            assert "taking over the expired writer lease" in taken.stderr
            after_takeover = tree_bytes(bucket)
        finally:
            proc.send_signal(signal.SIGCONT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, output
    assert "lease" in output and "stops writing" in output, output
    after = tree_bytes(bucket)
    assert {k for k, data in after_takeover.items() if after.get(k) != data} == set()
    # only an upload already on the wire when the process was paused may land later: a shard
    # under a new content-addressed name, which no index names (never an overwrite)
    assert all("/shards/" in key for key in set(after) - set(after_takeover)), output
    assert published(bucket, "up", "noarch") == {f"pkg{i}-1.0-0.conda" for i in range(6)}
    assert index_problems(bucket) == []
