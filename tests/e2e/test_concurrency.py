"""A sync of an upstream channel and a burst of 500 drops into the SAME channel, at once, in the
real daemon: nothing lost, nothing doubled, every record right, the tree verifies and installs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import run_cli
from tests.support.builder import PackageSpec, build_channel, package_bytes
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.rattler_client import solve_and_install
from tests.support.upstream_server import UpstreamServer

SUBDIRS = ("linux-64", "noarch")
DROPS = 500
MIRRORED = 120


def mirrored_specs() -> list[PackageSpec]:
    return [
        PackageSpec(f"mpkg{i:03d}", f"1.{i % 7}", subdir=SUBDIRS[i % 2]) for i in range(MIRRORED)
    ]


def drop_specs() -> list[PackageSpec]:
    """Distinct names, versions and builds, spread over both subdirs the sync also writes."""
    return [
        PackageSpec(
            f"drop{i:03d}",
            f"{i % 5}.{i % 11}",
            build=f"h{i % 3}_{i % 2}",
            build_number=i % 2,
            subdir=SUBDIRS[i % 2],
        )
        for i in range(DROPS)
    ]


def strict_repodata(path: Path) -> dict[str, Any]:
    """repodata.json, refusing a file name listed twice (json.loads would hide it)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"{path}: duplicate keys"
        return dict(pairs)

    data: dict[str, Any] = json.loads(path.read_bytes(), object_pairs_hook=no_duplicates)
    return data


def published(tree: Path, subdir: str) -> dict[str, dict[str, Any]]:
    data = strict_repodata(tree / subdir / "repodata.json")
    both = {**data["packages"], **data["packages.conda"]}
    assert len(both) == len(data["packages"]) + len(data["packages.conda"])
    return both


def all_published(tree: Path) -> dict[str, dict[str, Any]]:
    return {name: rec for s in SUBDIRS for name, rec in published(tree, s).items()}


def write_config(base: Path, upstream: str, port: int) -> Path:
    (base / "drops").mkdir()
    document = {
        "root": "tree",
        "state_dir": "state",
        "retry_backoff_s": 0.01,
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "watch": {"settle_s": 0.5, "debounce_s": 0.2},
        "recompress_after_s": 1,
        "channels": {
            "up": {
                "upstream": upstream,
                "subdirs": list(SUBDIRS),
                "workers": 4,
                "schedule": {"interval_minutes": 60, "at_start": True},
                "drop_folders": ["drops"],
            }
        },
    }
    path = base / "mirror.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_sync_and_500_drops_into_the_same_channel_at_once_lose_nothing(tmp_path: Path) -> None:
    upstream = build_channel(tmp_path / "upstream", mirrored_specs())
    drops = {spec.filename: (spec, package_bytes(spec)) for spec in drop_specs()}
    assert len(drops) == DROPS
    tree = tmp_path / "tree" / "up"
    port = free_port()
    # a remote upstream's latency makes the sync last long enough for the drops to meet it
    with (
        UpstreamServer(tmp_path / "upstream", latency_s=0.15) as server,
        DaemonProcess(
            write_config(tmp_path, server.url, port), tmp_path / "daemon.log", port
        ) as daemon,
    ):
        daemon.start()
        wait_for(lambda: server.count("/*/*.conda") > 0)  # the at-start sync is downloading
        sync_done_at_first_drop = daemon.metric(
            "conda_mirror_sync_runs_total", channel="up", outcome="ok"
        )

        def write_all() -> None:
            for filename, (_spec, data) in drops.items():
                (tmp_path / "drops" / filename).write_bytes(data)

        writer = threading.Thread(target=write_all)
        first_drop = time.monotonic()
        writer.start()
        writer.join()
        written_in = time.monotonic() - first_drop
        wait_for(lambda: set(drops) <= set(all_published(tree)), timeout=50, interval=0.02)
        visible_in = time.monotonic() - first_drop
        sync_done_when_visible = daemon.metric(
            "conda_mirror_sync_runs_total", channel="up", outcome="ok"
        )
        sync_runs = wait_for(
            lambda: daemon.metric("conda_mirror_sync_runs_total", channel="up", outcome="ok")
        )
        assert wait_for(
            lambda: (
                daemon.metric("conda_mirror_drops_total", channel="up", outcome="published")
                == DROPS
            )
        )
        code, _seconds = daemon.stop()
    print(
        f"\n{DROPS} drops written in {written_in:.2f} s during a sync of {MIRRORED} packages; "
        f"all visible {visible_in:.2f} s after the first drop"
    )

    assert sync_done_at_first_drop == 0  # the drops really met a running sync
    # ... and did not wait for all of it: they were published between its subdirs
    assert sync_done_when_visible == 0
    log = daemon.text()
    assert log.index("up/linux-64: ok") < log.index(" drops published") < log.index("up/noarch: ok")
    assert sync_runs == 1 and code == 0
    records = all_published(tree)
    expected = {**{f: r for s in SUBDIRS for f, r in upstream[s].items()}, **drops}
    assert set(records) == set(expected)  # nothing lost, nothing extra
    for filename, (spec, data) in drops.items():
        record = published(tree, spec.subdir)[filename]
        assert record["sha256"] == hashlib.sha256(data).hexdigest(), filename
        assert record["size"] == len(data), filename
        assert (tree / spec.subdir / filename).read_bytes() == data, filename
    for subdir in SUBDIRS:
        for filename, upstream_record in upstream[subdir].items():
            record = published(tree, subdir)[filename]
            assert record["sha256"] == upstream_record["sha256"], filename
            path = tree / subdir / filename
            assert hashlib.sha256(path.read_bytes()).hexdigest() == upstream_record["sha256"]
        on_disk = {p.name for p in (tree / subdir).iterdir() if p.name.endswith(".conda")}
        assert on_disk == set(published(tree, subdir))
    assert not list((tmp_path / "drops").iterdir())
    assert not list((tmp_path / "state").rglob("*.reason"))  # nothing quarantined

    verify = run_cli(["verify", "--config", str(tmp_path / "mirror.yaml"), "--full"], timeout=60)
    assert verify.code == 0, verify.stdout + verify.stderr
    assert f"verified {DROPS + MIRRORED} records" in verify.stderr

    names = solve_and_install(
        [tree.as_uri()],
        ["drop007", "mpkg003"],
        list(SUBDIRS),
        tmp_path / "env",
        tmp_path / "cache",
    )
    assert names == {"drop007", "mpkg003"}
    assert (tmp_path / "env" / "share" / "drop007").is_dir()
    assert (tmp_path / "env" / "share" / "mpkg003").is_dir()
