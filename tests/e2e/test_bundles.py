"""Across the air gap: export bundles on the connected side, import them offline.

Two real trees (connected, synced from a loopback upstream; offline, fed only by bundles),
several syncs with additions, replacements and deletions upstream; after each import the
offline tree equals the connected one byte for byte and py-rattler installs from it. Then every
way a bundle can go wrong: damaged or missing parts, a tampered manifest, the wrong order, a
second import, an interrupted one, a bad signature, a hostile manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.core.bundle_manifest import MANIFEST, MANIFEST_SUM
from tests.conftest import run_cli
from tests.support import rattler_client
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import UpstreamServer


def _tree(root: Path) -> dict[str, str]:
    """Every published file under a channel folder (dotfiles are private) -> its sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


class Sites:
    """A connected site mirroring `up` and an offline site that only imports."""

    def __init__(self, base: Path, upstream: str, **bundles: Any) -> None:
        self.base = base
        self.connected = self._config("connected", {"upstream": upstream}, bundles)
        self.offline = self._config("offline", {}, bundles)

    def _config(self, name: str, extra: dict[str, Any], bundles: dict[str, Any]) -> Path:
        folder = self.base / name
        folder.mkdir(parents=True)
        doc: dict[str, Any] = {
            "root": "tree", "state_dir": "state", "retry_backoff_s": 0.01,
            "max_delete_fraction": 0.5,
            "max_replace_fraction": 1.0,  # the scenario rebuilds a published package
            "channels": {"up": {"subdirs": ["linux-64", "noarch"], **extra}},
        }  # fmt: skip
        if bundles:
            doc["bundles"] = bundles
        (folder / "mirror.yaml").write_text(yaml.safe_dump(doc))
        return folder / "mirror.yaml"

    def tree(self, side: str) -> dict[str, str]:
        return _tree(self.base / side / "tree" / "up")

    def sync(self) -> None:
        result = run_cli(["sync", "--config", str(self.connected)])
        assert result.code == 0, result.stderr

    def export(self, out: str, *args: str) -> Path:
        path = self.base / out
        result = run_cli(["export", "--config", str(self.connected), "--out", str(path), *args])
        assert result.code == 0, result.stderr
        return path

    def import_(self, bundle: Path, *args: str) -> Any:
        return run_cli(["import", str(bundle), "--config", str(self.offline), *args])

    def snapshot_ids(self, side: str) -> list[int]:
        config = self.connected if side == "connected" else self.offline
        result = run_cli(["snapshots", "--json", "--config", str(config)])
        assert result.code == 0, result.stderr
        return [row["id"] for row in json.loads(result.stdout)]


def _specs(version: int) -> list[PackageSpec]:
    """Upstream over time: packages come, go, and one is rebuilt under the same name."""
    specs = [
        PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64",
                    files={"lib/libz.txt": f"zlib build {min(version, 2)}".encode()}),
        PackageSpec("libfoo", "1.10", build="h1_0", subdir="linux-64", depends=("zlib >=1.3",)),
        PackageSpec("tool", "0.5", build="h2_0", subdir="linux-64", depends=("libfoo >=1.10",)),
        PackageSpec("appdata", "2024.1", build="0"),
    ]  # fmt: skip
    if version < 3:
        specs.append(PackageSpec("old", "1.0", build="0", subdir="linux-64"))
    for i in range(version * 3):
        specs.append(PackageSpec(f"extra{i:02d}", "1.0", build="0"))
    return specs


@pytest.fixture
def upstream(tmp_path: Path) -> Any:
    root = tmp_path / "upstream"
    build_channel(root, _specs(1))
    with UpstreamServer(root) as server:
        yield server, root


def test_bundles_carry_each_sync_across_and_the_offline_tree_equals_the_connected_one(
    upstream: tuple[UpstreamServer, Path], tmp_path: Path
) -> None:
    server, root = upstream
    sites = Sites(tmp_path / "sites", server.url)
    sites.sync()
    full = sites.export("bundle-1", "--full")
    assert sites.import_(full).code == 0
    assert sites.tree("offline") == sites.tree("connected")
    first = sites.snapshot_ids("connected")[-1]

    # upstream changes: a rebuilt zlib under the same name, a removed package, new ones
    shutil.rmtree(root)
    build_channel(root, _specs(2))
    sites.sync()
    second = sites.export("bundle-2", "--since", str(first))
    manifest = json.loads((second / MANIFEST).read_bytes())
    carried = {f["path"].rsplit("/", 1)[-1] for f in manifest["files"]}
    assert "zlib-1.3.1-h0_0.conda" in carried and "tool-0.5-h2_0.conda" not in carried
    assert sites.import_(second).code == 0
    assert sites.tree("offline") == sites.tree("connected")

    shutil.rmtree(root)
    build_channel(root, _specs(3))
    sites.sync()
    third = sites.export("bundle-3", "--since", str(sites.snapshot_ids("connected")[-2]),
                         "--split-size", "8KiB")  # fmt: skip
    manifest = json.loads((third / MANIFEST).read_bytes())
    assert len(manifest["parts"]) > 2 and all(p["size"] <= 8192 for p in manifest["parts"])
    assert "linux-64/old-1.0-0.conda" in manifest["channels"][0]["deleted"]
    result = sites.import_(third)
    assert result.code == 0, result.stderr
    assert sites.tree("offline") == sites.tree("connected")
    assert "linux-64/old-1.0-0.conda" not in sites.tree("offline")

    channel = (tmp_path / "sites" / "offline" / "tree" / "up").as_uri()
    installed = rattler_client.solve_and_install(
        [channel], ["tool"], ["linux-64", "noarch"], tmp_path / "prefix", tmp_path / "cache"
    )
    assert installed == {"tool", "libfoo", "zlib"}
    assert (tmp_path / "prefix" / "lib" / "libz.txt").read_bytes() == b"zlib build 2"
    verify = run_cli(["verify", "--full", "--config", str(sites.offline)])
    assert verify.code == 0, verify.stdout + verify.stderr
    status = run_cli(["status", "--json", "--config", str(sites.offline)])
    rows = {r["subdir"]: r for r in json.loads(status.stdout)}
    linux = {p for p in sites.tree("offline") if p.startswith("linux-64/") and p.endswith(".conda")}
    assert rows["linux-64"]["packages"] == len(linux) and rows["linux-64"]["size_bytes"] > 0
    assert rows["linux-64"]["last_outcome"] == "imported"
    # the parts are one tar stream: a person can unpack it by hand
    assert (third / "data.0001.tar").read_bytes()[257:262] == b"ustar"


@pytest.fixture
def two_bundles(upstream: tuple[UpstreamServer, Path], tmp_path: Path) -> Any:
    server, root = upstream
    sites = Sites(tmp_path / "sites", server.url)
    sites.sync()
    full = sites.export("full", "--full")
    first = sites.snapshot_ids("connected")[-1]
    shutil.rmtree(root)
    build_channel(root, _specs(2))
    sites.sync()
    delta = sites.export("delta", "--since", str(first), "--split-size", "16KiB")
    return sites, full, delta


def _unchanged(sites: Sites, before: dict[str, str]) -> None:
    assert sites.tree("offline") == before


def test_a_damaged_or_missing_part_is_refused_before_the_tree_is_touched(two_bundles: Any) -> None:
    sites, full, delta = two_bundles
    assert sites.import_(full).code == 0
    before = sites.tree("offline")
    part = delta / "data.0002.tar"
    original = part.read_bytes()
    part.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    result = sites.import_(delta)
    assert result.code == 1
    assert "data.0002.tar: damaged" in result.stderr and "copy it again" in result.stderr
    _unchanged(sites, before)

    part.unlink()
    result = sites.import_(delta)
    assert result.code == 1 and "data.0002.tar: this part of the bundle is missing" in result.stderr
    _unchanged(sites, before)
    part.write_bytes(original)
    assert sites.import_(delta).code == 0
    assert sites.tree("offline") == sites.tree("connected")


def test_a_tampered_manifest_and_a_hostile_one_are_refused(two_bundles: Any) -> None:
    sites, full, _ = two_bundles
    manifest = json.loads((full / MANIFEST).read_bytes())
    manifest["files"][0]["sha256"] = "0" * 64
    (full / MANIFEST).write_text(json.dumps(manifest))
    result = sites.import_(full)
    assert result.code == 1 and "the manifest is damaged" in result.stderr

    # a consistent manifest (its sha256 recomputed) that points outside the tree
    manifest["files"][0]["path"] = "up/../../../etc/evil.conda"
    body = json.dumps(manifest).encode()
    (full / MANIFEST).write_bytes(body)
    (full / MANIFEST_SUM).write_text(f"{hashlib.sha256(body).hexdigest()}  {MANIFEST}\n")
    result = sites.import_(full)
    assert result.code == 1 and "unsafe or unlisted file path" in result.stderr
    assert not (sites.base / "offline" / "tree").exists()


def test_a_bundle_for_a_channel_this_site_does_not_name_is_refused(two_bundles: Any) -> None:
    sites, full, _ = two_bundles
    config = yaml.safe_load(sites.offline.read_text())
    config["channels"] = {"other": {"subdirs": ["noarch"]}}
    sites.offline.write_text(yaml.safe_dump(config))
    result = sites.import_(full)
    assert result.code == 1
    assert "carries channel up, which" in result.stderr and "does not name" in result.stderr
    assert not (sites.base / "offline" / "tree" / "up").exists()


def test_bundles_out_of_order_are_refused_and_a_second_import_changes_nothing(
    two_bundles: Any,
) -> None:
    sites, full, delta = two_bundles
    result = sites.import_(delta)
    assert result.code == 1
    assert "has never imported this channel" in result.stderr and "--full" in result.stderr
    assert sites.import_(full).code == 0
    again = sites.import_(full)
    assert again.code == 0 and "already there" in again.stdout
    assert "wrote 0 files" in again.stderr
    assert sites.import_(delta).code == 0
    # a full bundle fits any tree: importing it takes the tree back to its snapshot, exactly
    back = sites.import_(full)
    assert back.code == 0
    assert sites.tree("offline") == _tree_of_bundle_target(sites, full)


def _tree_of_bundle_target(sites: Sites, bundle: Path) -> dict[str, str]:
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    return {f["path"].split("/", 1)[1]: f["sha256"] for f in manifest["files"]}


def test_an_interrupted_import_finishes_when_run_again(
    two_bundles: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirror.bundles import importer
    from mirror.config import load_config
    from mirror.errors import BundleError

    sites, full, delta = two_bundles
    assert sites.import_(full).code == 0
    config = load_config(sites.offline)
    install = importer.install_staged
    calls = {"n": 0}

    def dies_after_two(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # the power goes out
        return install(*args)

    monkeypatch.setattr(importer, "install_staged", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        importer.run_import(config, delta)
    monkeypatch.setattr(importer, "install_staged", install)
    assert (config.state_dir / "import-journal.json").exists()
    assert not list(config.root.rglob(".mirror-*.tmp"))  # the staged copies are gone

    with pytest.raises(BundleError, match="was interrupted and must finish first"):
        importer.run_import(config, full)
    report = importer.run_import(config, delta)
    assert report.skipped >= 2  # the two files installed before the cut are not copied again
    assert sites.tree("offline") == sites.tree("connected")
    assert not (config.state_dir / "import-journal.json").exists()


def test_a_damaged_bundle_leaves_no_staged_copy_behind(two_bundles: Any) -> None:
    sites, full, _ = two_bundles
    last = sorted(full.glob("data.*.tar"))[-1]
    data = bytearray(last.read_bytes())
    data[-2000] ^= 0xFF
    last.write_bytes(bytes(data))
    result = sites.import_(full)
    assert result.code == 1 and "damaged" in result.stderr
    root = sites.base / "offline" / "tree"
    # staged copies sat beside their destinations (same file system) and are gone again
    assert not [p for p in root.rglob("*") if p.is_file() and p.name != ".mirror-lock"]


def test_a_signature_hook_signs_and_an_import_checks_it(
    upstream: tuple[UpstreamServer, Path], tmp_path: Path
) -> None:
    server, _ = upstream
    hooks = {
        "sign_command": ["sh", "-c", "cd \"$(dirname \"$0\")\" && sha256sum manifest.json > \"$1\"",
                         "{manifest}", "{signature}"],
        "verify_command": ["sh", "-c", "cd \"$(dirname \"$0\")\" && sha256sum -c \"$0\"",
                           "{signature}"],
    }  # fmt: skip
    sites = Sites(tmp_path / "sites", server.url, **hooks)
    sites.sync()
    bundle = sites.export("signed", "--full")
    assert (bundle / "manifest.json.sig").exists()
    assert sites.import_(bundle, "--dry-run").code == 0
    signature = bundle / "manifest.json.sig"
    signature.write_text("0" * 64 + "  manifest.json\n")
    result = sites.import_(bundle)
    assert result.code == 1 and "bundles.verify_command 'sh' failed" in result.stderr
    assert not (sites.base / "offline" / "tree" / "up").exists()


def test_the_daemon_writes_a_bundle_to_the_outbox_after_a_sync(
    upstream: tuple[UpstreamServer, Path], tmp_path: Path
) -> None:
    from tests.support.daemon_proc import DaemonProcess, free_port, wait_for

    server, _ = upstream
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    port = free_port()
    sites = Sites(tmp_path / "sites", server.url, outbox=str(outbox))
    config = yaml.safe_load(sites.connected.read_text())
    config["channels"]["up"]["schedule"] = {"interval_minutes": 60, "at_start": True}
    config["metrics"] = {"listen": f"127.0.0.1:{port}"}
    sites.connected.write_text(yaml.safe_dump(config))
    with DaemonProcess(sites.connected, tmp_path / "daemon.log", port) as daemon:
        daemon.start()
        wait_for(lambda: daemon.metric("conda_mirror_exports_total", channel="up", outcome="ok"))
        assert daemon.metric("conda_mirror_export_bytes", channel="up") > 0
    (bundle,) = [p for p in outbox.iterdir()]
    assert bundle.name.startswith("up-full-to-")
    assert sites.import_(bundle).code == 0
    assert sites.tree("offline") == sites.tree("connected")


def test_an_import_killed_at_random_moments_never_leaves_a_wrong_file_and_finishes_later(
    tmp_path: Path,
) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    root = tmp_path / "upstream"
    build_channel(root, [
        PackageSpec(f"big{i:02d}", "1.0", build="0", subdir="linux-64",
                    files={f"share/big{i:02d}.bin": random.Random(i).randbytes(400_000)})
        for i in range(40)
    ])  # fmt: skip
    with UpstreamServer(root) as server:
        sites = Sites(tmp_path / "sites", server.url)
        sites.sync()
    bundle = sites.export("full", "--full")
    connected = sites.tree("connected")
    offline = sites.base / "offline"
    started = time.monotonic()
    assert sites.import_(bundle).code == 0
    duration = time.monotonic() - started
    rng = random.Random(7)  # seeded: a failing point replays
    for point in range(6):
        shutil.rmtree(offline / "tree")
        shutil.rmtree(offline / "state")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "import", str(bundle), "--config",
             str(sites.offline)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # whatever the moment: every file under a published name has its final bytes
        after_kill = sites.tree("offline")
        wrong = {p for p, sha in after_kill.items() if connected.get(p) != sha}
        assert wrong == set(), f"point {point}: {sorted(wrong)[:3]}"
        result = sites.import_(bundle)
        assert result.code == 0, f"point {point}: {result.stderr}"
        assert sites.tree("offline") == connected


_SUMMARY = re.compile(
    r"(?:would write|wrote) (\d+) files \(([\d.,]+) MB\), (?:keep|kept) (\d+) already in "
    r"place,? (?:and delete|deleted) (\d+)"
)


def _counts(stderr: str) -> tuple[int, str, int, int]:
    """(written, MB, kept, deleted) from an import's summary line."""
    match = _SUMMARY.search(stderr)
    assert match, stderr
    return int(match[1]), match[2], int(match[3]), int(match[4])


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under a folder with its size and mtime: a dry run must change none of it."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_dry_run_counts_what_the_import_then_does_and_changes_nothing(two_bundles: Any) -> None:
    sites, full, delta = two_bundles
    offline = sites.base / "offline"
    dry = sites.import_(full, "--dry-run")
    assert dry.code == 0, dry.stderr
    assert not (offline / "state").exists() and not (offline / "tree").exists()
    real = sites.import_(full)
    assert real.code == 0, real.stderr
    assert _counts(dry.stderr) == _counts(real.stderr)
    assert "nothing was changed" in dry.stderr
    assert _counts(real.stderr)[0] == len(sites.tree("offline")) > 0

    # a delta over an imported tree (replaced files), then the full bundle again, which takes
    # the tree back and so deletes what the delta added; each dry run against a real state
    for bundle in (delta, full):
        before = _state(offline)
        dry = sites.import_(bundle, "--dry-run")
        assert dry.code == 0, dry.stderr
        assert _state(offline) == before
        real = sites.import_(bundle)
        assert real.code == 0, real.stderr
        assert _counts(dry.stderr) == _counts(real.stderr)
    assert _counts(real.stderr)[3] > 0  # the last one deleted files
