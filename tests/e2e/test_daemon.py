"""The daemon, run for real in a subprocess: schedules, drop folders, metrics, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli
from tests.support.builder import PackageSpec, package_bytes
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.rattler_client import solve_and_install
from tests.support.upstream_server import UpstreamServer


def write_daemon_config(base: Path, upstream_url: str, port: int, **extra: object) -> Path:
    (base / "drops").mkdir(exist_ok=True)
    document = {
        "root": "tree",
        "state_dir": "state",
        "retry_backoff_s": 0.01,
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "watch": {"settle_s": 0.5, "debounce_s": 0.2},
        "recompress_after_s": 1,
        "channels": {
            "up": {
                "upstream": upstream_url,
                "subdirs": ["linux-64", "noarch"],
                "schedule": {"interval_minutes": 60, "at_start": True},
            },
            "local": {"subdirs": ["linux-64", "noarch"], "drop_folders": ["drops"]},
        },
        **extra,
    }
    path = base / "mirror.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def repodata(base: Path, channel: str, subdir: str) -> dict:
    return json.loads((base / "tree" / channel / subdir / "repodata.json").read_bytes())


def published(base: Path, channel: str, subdir: str) -> set[str]:
    data = repodata(base, channel, subdir)
    return set(data["packages"]) | set(data["packages.conda"])


def shard_names(base: Path, channel: str, subdir: str) -> set[str]:
    import msgspec
    import zstandard

    raw = (base / "tree" / channel / subdir / "repodata_shards.msgpack.zst").read_bytes()
    index = msgspec.msgpack.decode(zstandard.ZstdDecompressor().stream_reader(raw).read())
    return set(index["shards"])


def write_slowly(path: Path, data: bytes, chunk: int = 64, pause_s: float = 0.01) -> None:
    """Like a slow copy: one open file growing in chunks."""
    with path.open("wb") as handle:
        for start in range(0, len(data), chunk):
            handle.write(data[start : start + chunk])
            handle.flush()
            time.sleep(pause_s)


@pytest.fixture
def running(tmp_path: Path, server: UpstreamServer):
    port = free_port()
    config = write_daemon_config(tmp_path, server.url, port)
    with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
        daemon.start()
        yield daemon, tmp_path


def test_scheduled_sync_runs_and_metrics_move(running) -> None:
    daemon, base = running
    wait_for(lambda: daemon.metric("conda_mirror_sync_runs_total", channel="up", outcome="ok"))
    assert "zlib-1.3.1-h0_0.conda" in published(base, "up", "linux-64")
    assert daemon.metric("conda_mirror_downloaded_packages_total", channel="up") == 8
    assert daemon.metric("conda_mirror_last_success_timestamp_seconds", channel="up") > 0
    assert daemon.metric("conda_mirror_published_packages", channel="up", subdir="linux-64") == 6
    # every dependency of the world's records is mirrored with them (0, and present)
    dangling = 'conda_mirror_dangling_dependencies{channel="up",subdir="%s"} 0.0'
    assert all(dangling % s in daemon.metrics() for s in ("linux-64", "noarch"))
    assert daemon.metric("conda_mirror_build_info", version="0.1.0") == 1
    status = run_cli(["status", "--config", str(base / "mirror.yaml"), "--json"])
    rows = {(r["channel"], r["subdir"]): r for r in json.loads(status.stdout)}
    assert rows[("up", "linux-64")]["packages"] == 6
    assert rows[("up", "linux-64")]["last_outcome"] == "ok"
    assert rows[("up", "linux-64")]["next_run_at"] > time.time() + 3000  # the hourly slot
    assert rows[("local", "linux-64")]["packages"] == 0


def test_a_slowly_written_drop_is_published_and_installable(running, tmp_path: Path) -> None:
    daemon, base = running
    data = package_bytes(PackageSpec("dropped", "1.0", files={"share/dropped/x": b"hi\n"}))
    write_slowly(base / "drops" / "dropped-1.0-0.conda", data, chunk=max(1, len(data) // 40))
    wait_for(lambda: "dropped-1.0-0.conda" in published(base, "local", "noarch"))
    # the shard index is written after repodata.json (the publish order): wait for it too
    wait_for(lambda: "dropped" in shard_names(base, "local", "noarch"))
    assert not (base / "drops" / "dropped-1.0-0.conda").exists()
    assert (base / "tree" / "local" / "noarch" / "dropped-1.0-0.conda").read_bytes() == data
    assert not list((base / "state").rglob("dropped-1.0-0.conda*"))  # never quarantined
    names = solve_and_install(
        [(base / "tree" / "local").as_uri()],
        ["dropped"],
        ["linux-64", "noarch"],
        tmp_path / "env",
        tmp_path / "cache",
    )
    assert names == {"dropped"}
    assert (tmp_path / "env" / "share" / "dropped" / "x").read_bytes() == b"hi\n"
    assert daemon.metric("conda_mirror_drops_total", channel="local", outcome="published") == 1
    assert (
        wait_for(
            lambda: daemon.metric("conda_mirror_drop_to_visible_seconds_count", channel="local")
        )
        == 1
    )


def test_a_corrupt_drop_is_quarantined_while_good_drops_around_it_are_published(running) -> None:
    daemon, base = running
    good = [PackageSpec(f"good{i}", "1.0") for i in range(3)]
    for spec in good[:2]:
        (base / "drops" / spec.filename).write_bytes(package_bytes(spec))
    (base / "drops" / "broken-1.0-0.conda").write_bytes(b"PK\x03\x04 not really a zip")
    (base / "drops" / good[2].filename).write_bytes(package_bytes(good[2]))
    wait_for(lambda: {s.filename for s in good} <= published(base, "local", "noarch"))
    wait_for(
        lambda: daemon.metric(
            "conda_mirror_quarantined_files_total", channel="local", reason="corrupt"
        ),
        timeout=30,
    )
    reason = next((base / "state" / "quarantine").rglob("broken-1.0-0.conda.reason"))
    assert "not a valid zip" in reason.read_text()
    assert "broken-1.0-0.conda" not in published(base, "local", "noarch")
    assert not (base / "drops" / "broken-1.0-0.conda").exists()
    assert daemon.proc is not None and daemon.proc.poll() is None  # still serving


def test_a_duplicate_drop_is_removed_and_a_conflicting_one_quarantined(running) -> None:
    daemon, base = running
    spec = PackageSpec("dup", "1.0")
    (base / "drops" / spec.filename).write_bytes(package_bytes(spec))
    wait_for(lambda: spec.filename in published(base, "local", "noarch"))
    (base / "drops" / spec.filename).write_bytes(package_bytes(spec))  # identical again
    wait_for(
        lambda: daemon.metric("conda_mirror_drops_total", channel="local", outcome="duplicate")
    )
    other = package_bytes(PackageSpec("dup", "1.0", files={"share/dup/other": b"x"}))
    (base / "drops" / spec.filename).write_bytes(other)
    wait_for(
        lambda: daemon.metric(
            "conda_mirror_quarantined_files_total", channel="local", reason="name_conflict"
        ),
        timeout=30,
    )
    published_bytes = (base / "tree" / "local" / "noarch" / spec.filename).read_bytes()
    assert published_bytes == package_bytes(spec)  # never overwritten


def test_sighup_with_a_broken_config_keeps_the_old_one(running) -> None:
    daemon, base = running
    config = base / "mirror.yaml"
    good = config.read_text()
    config.write_text(good + "\nchannels: [oops\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused, keeping the running configuration" in daemon.text())
    config.write_text(good)
    spec = PackageSpec("after-hup", "1.0")
    (base / "drops" / spec.filename).write_bytes(package_bytes(spec))
    wait_for(lambda: spec.filename in published(base, "local", "noarch"))
    # a valid change is applied: a new drop folder starts being watched
    (base / "drops2").mkdir()
    document = yaml.safe_load(good)
    document["channels"]["local"]["drop_folders"] = ["drops", "drops2"]
    config.write_text(yaml.safe_dump(document))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in daemon.text())
    spec2 = PackageSpec("via-new-folder", "1.0")
    (base / "drops2" / spec2.filename).write_bytes(package_bytes(spec2))
    wait_for(lambda: spec2.filename in published(base, "local", "noarch"))


def test_sigterm_stops_within_10_s_leaving_a_consistent_tree(running) -> None:
    daemon, base = running
    for i in range(20):
        (base / "drops" / f"late{i}-1.0-0.conda").write_bytes(
            package_bytes(PackageSpec(f"late{i}", "1.0"))
        )
    time.sleep(0.3)
    code, seconds = daemon.stop()
    assert code == 0 and seconds < 10
    for channel in ("up", "local"):
        for subdir in ("linux-64", "noarch"):
            path = base / "tree" / channel / subdir / "repodata.json"
            if path.exists():
                for name in published(base, channel, subdir):
                    assert (path.parent / name).exists(), name
    assert not [p for p in (base / "tree").rglob(".mirror-*.tmp")]  # the lock and markers stay


def test_a_second_daemon_on_the_same_tree_refuses(running) -> None:
    _daemon, base = running
    result = run_cli(["daemon", "--config", str(base / "mirror.yaml")], timeout=30)
    assert result.code == 3
    assert "another mirror process" in result.stderr


def test_files_dropped_while_the_daemon_was_down_are_published_at_start(
    tmp_path: Path, server: UpstreamServer
) -> None:
    port = free_port()
    config = write_daemon_config(tmp_path, server.url, port)
    early = PackageSpec("early", "1.0")
    (tmp_path / "drops" / early.filename).write_bytes(package_bytes(early))
    with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
        daemon.start()
        wait_for(lambda: early.filename in published(tmp_path, "local", "noarch"))
        assert published(tmp_path, "local", "linux-64") == set()  # configured, empty, present
        daemon.stop()


def test_a_burst_of_drops_is_published_in_a_few_index_runs(running) -> None:
    daemon, base = running
    specs = [PackageSpec(f"burst{i:03d}", "1.0") for i in range(200)]
    staging = base / "staging"
    staging.mkdir()
    for spec in specs:
        (staging / spec.filename).write_bytes(package_bytes(spec))
    for spec in specs:  # a rename into the folder is how most tools finish a copy
        os.replace(staging / spec.filename, base / "drops" / spec.filename)
    wait_for(lambda: {s.filename for s in specs} <= published(base, "local", "noarch"), timeout=60)
    # the index becomes visible a moment before the run is counted: wait for the count
    runs = wait_for(
        lambda: daemon.metric("conda_mirror_index_duration_seconds_count", channel="local")
    )
    assert 1 <= runs <= 10, runs


def test_metrics_pass_promtool_and_match_the_documented_table(running) -> None:
    daemon, _base = running
    wait_for(lambda: daemon.metric("conda_mirror_sync_runs_total", channel="up", outcome="ok"))
    text = daemon.metrics()
    names = set(re.findall(r"^# TYPE (conda_mirror_\w+) ", text, re.M))
    documented = (REPO / "docs" / "operations.md").read_text()
    table = set(re.findall(r"^\| `(conda_mirror_\w+)` \|", documented, re.M))
    assert names == table
    promtool = subprocess.run(["which", "promtool"], capture_output=True, text=True).stdout.strip()
    if not promtool:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
