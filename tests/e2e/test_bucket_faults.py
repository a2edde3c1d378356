"""A bucket server that fails a fifth of all requests (500 InternalError, 503 SlowDown, and
connections reset after the server did the work) still gets a tree that verifies: retries
with backoff carry most requests through, and a rerun finishes what a run could not."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.support.bucket_site import PREFIX, bucket_config, index_problems, published
from tests.support.builder import PackageSpec, build_channel
from tests.support.s3_server import S3Bucket, environment
from tests.support.upstream_server import UpstreamServer

SUBDIRS = ["linux-64", "noarch"]
RUNS = 3  # a run whose requests all failed their retries is run again, as a timer would


# lost_reply and late_500: the server did the work, the client cannot know (a conditional
# PUT tried again then finds its own object: that must count as done, not as a conflict)
KINDS = ("500", "503", "lost_reply", "late_500")


def test_a_server_failing_a_fifth_of_requests_still_converges_to_a_tree_that_verifies(
    tmp_path: Path, s3: S3Bucket
) -> None:
    specs = [
        PackageSpec(f"pkg{i:02d}", f"1.{v}", subdir=SUBDIRS[i % 2], build="h0_0")
        for i in range(20) for v in range(2)
    ]  # fmt: skip
    build_channel(tmp_path / "upstream", specs)
    with UpstreamServer(tmp_path / "upstream") as server:
        config = bucket_config(tmp_path, s3, {"up": {"upstream": server.url, "subdirs": SUBDIRS}})
        s3.gateway.fail_randomly(0.2, KINDS, seed=7)
        codes = []
        for _ in range(RUNS):
            result = run_cli(["sync", "--config", str(config)], env=environment())
            codes.append(result.code)
            if result.code == 0:
                break
        failed = [r for r in s3.gateway.requests if r.fault]
        s3.gateway.heal()
    assert codes[-1] == 0, f"exit codes {codes}: {result.stderr}"
    assert len(failed) >= 20, "the gateway hardly failed anything: the test proves nothing"
    bucket = s3.bucket(PREFIX)
    assert index_problems(bucket) == []
    wanted = {spec.filename for spec in specs}
    assert published(bucket, "up", "linux-64") | published(bucket, "up", "noarch") == wanted
    verify = run_cli(["verify", "--full", "--config", str(config)], env=environment())
    assert verify.code == 0, verify.stdout + verify.stderr
