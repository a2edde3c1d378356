"""The real `mirror` command in a subprocess: exit codes, messages, secrets, the writer lock."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

from mirror.adapters.lock import state_lock, tree_lock
from tests.conftest import REPO, run_cli, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import UpstreamServer

TOKEN = "tk-9f8e7d6c5b4a39281706"
BEARER = "bearer-0a1b2c3d4e5f60718293"


def test_help_documents_the_exit_codes() -> None:
    result = run_cli(["sync", "--help"])
    assert result.code == 0
    for line in ("0    everything", "1    some work failed", "2    configuration", "3    another"):
        assert line in result.stdout


def test_demo_config_syncs_with_exit_code_0_and_prints_summaries(tmp_path: Path) -> None:
    config = (REPO / "config" / "demo.yaml").read_text()
    (tmp_path / "demo-channel").symlink_to(REPO / "config" / "demo-channel")
    (tmp_path / "demo.yaml").write_text(config.replace("../.demo", "out"))
    result = run_cli(["sync", "--config", str(tmp_path / "demo.yaml")])
    assert result.code == 0, result.stderr
    assert "demo/linux-64: ok; 6 selected, downloaded 6 files" in result.stderr
    assert "demo/noarch: ok; 3 selected" in result.stderr
    tree = tmp_path / "out" / "channels" / "demo"
    assert not (tree / "linux-64" / "demo-gpl-tool-1.0-h0_0.conda").exists()
    assert not (tree / "linux-64" / "demo-numlib-1.9-rt1_0.conda").exists()
    assert (tree / "linux-64" / "demo-numlib-2.0rc1-rt1_0.conda").exists()
    assert not (tree / "linux-64" / "demo-runtime-1.1-h1a2b3c_0.tar.bz2").exists()

    again = run_cli(["sync"], env={"MIRROR_CONFIG": str(tmp_path / "demo.yaml")})
    assert again.code == 0 and "unchanged" in again.stderr


def test_config_error_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "root: t\nstate_dir: s\nchannels:\n  c:\n    upstream: .\n"
        "    subdirs: [noarch]\n    keep_lastest: 3\n"
    )
    result = run_cli(["sync", "--config", str(path)])
    assert result.code == 2
    assert f"{path}:7: channels.c.keep_lastest: unknown key; did you mean 'keep_latest'?" in (
        result.stderr
    )


def test_missing_config_and_unknown_channel_exit_2(tmp_path: Path) -> None:
    result = run_cli(["sync", "--config", str(tmp_path / "nope.yaml")])
    assert result.code == 2 and "config file not found" in result.stderr
    build_channel(tmp_path / "up", [PackageSpec("a", "1")])
    config = write_config(tmp_path, {"c": {"upstream": "up", "subdirs": ["noarch"]}})
    result = run_cli(["sync", "--config", str(config), "--channel", "nope"])
    assert result.code == 2 and "no channel named nope" in result.stderr


def test_failed_work_exits_1_and_names_the_file(tmp_path: Path) -> None:
    up = tmp_path / "up"
    build_channel(up, [PackageSpec("a", "1.0"), PackageSpec("b", "1.0")])
    (up / "noarch" / "b-1.0-0.conda").unlink()  # listed upstream, but the file is gone
    config = write_config(tmp_path, {"c": {"upstream": "up", "subdirs": ["noarch"]}})
    result = run_cli(["sync", "--config", str(config)])
    assert result.code == 1
    assert "b-1.0-0.conda" in result.stderr and "not found" in result.stderr
    assert (tmp_path / "tree" / "c" / "noarch" / "a-1.0-0.conda").exists()


def test_a_second_writer_of_the_same_tree_is_refused_whatever_its_state_dir(
    tmp_path: Path,
) -> None:
    build_channel(tmp_path / "up", [PackageSpec("a", "1")])
    channels = {"c": {"upstream": "up", "subdirs": ["noarch"]}}
    config = write_config(tmp_path, channels)
    other = tmp_path / "other"
    other.mkdir()
    (other / "up").symlink_to(tmp_path / "up")
    second = write_config(other, channels, root=str(tmp_path / "tree"), state_dir="state2")
    with tree_lock(tmp_path / "tree"):
        result = run_cli(["sync", "--config", str(second)])
    assert result.code == 3
    assert "another mirror process is writing the tree" in result.stderr
    assert f"pid {os.getpid()} on {socket.gethostname()}" in result.stderr
    assert not (tmp_path / "tree" / "c").exists()
    with state_lock(tmp_path / "state"):  # the state directory is one writer's too
        assert run_cli(["sync", "--config", str(config)]).code == 3
    assert run_cli(["sync", "--config", str(config)]).code == 0  # released with its holder


def test_tokens_never_appear_in_output_state_or_tree(tmp_path: Path) -> None:
    up = tmp_path / "up"
    build_channel(up, [PackageSpec("a", "1.0", subdir="linux-64"), PackageSpec("b", "1.0")])
    (up / "noarch" / "b-1.0-0.conda").unlink()  # a 404 whose error message carries a URL
    with UpstreamServer(up, token=TOKEN, bearer=BEARER) as server:
        assert TOKEN in server.url
        server.add_fault("/linux-64/repodata.json.zst", "500", count=1)
        server.add_fault("/linux-64/a-1.0-0.conda", "reset", count=1)
        config = write_config(
            tmp_path,
            {
                "priv": {
                    "upstream": server.url,
                    "token_env": "PRIV_TOKEN",
                    "subdirs": ["linux-64", "noarch"],
                }
            },
            retries=2,
        )
        env = {"PRIV_TOKEN": BEARER}
        outputs = [
            run_cli(["sync", "--config", str(config), "--log-level", "DEBUG"], env=env),
            run_cli(["sync", "--config", str(config), "--dry-run"], env=env),
            run_cli(["check-config", "--config", str(config)], env=env),
        ]
        assert server.count("*", status=401) == 0  # the bearer token was sent
    assert outputs[0].code == 1  # b is missing upstream
    assert "/t/***/" in outputs[0].stderr  # URLs are shown, masked
    assert "b-1.0-0.conda" in outputs[0].stderr
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert TOKEN not in text and BEARER not in text
    for path in [*tmp_path.joinpath("state").rglob("*"), *tmp_path.joinpath("tree").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and BEARER.encode() not in data, path
    with sqlite3.connect(tmp_path / "state" / "catalog.sqlite") as db:
        dump = "\n".join(db.iterdump())
    assert TOKEN not in dump and BEARER not in dump
    assert (tmp_path / "tree" / "priv" / "linux-64" / "a-1.0-0.conda").exists()


def test_missing_token_variable_is_a_clear_failure(tmp_path: Path) -> None:
    build_channel(tmp_path / "up", [PackageSpec("a", "1")])
    config = write_config(
        tmp_path, {"c": {"upstream": "up", "subdirs": ["noarch"], "token_env": "NOT_SET_ANYWHERE"}}
    )
    result = run_cli(["sync", "--config", str(config)])
    assert result.code == 1 and "$NOT_SET_ANYWHERE, which is not set" in result.stderr


def test_check_config_prints_the_effective_config(tmp_path: Path) -> None:
    result = run_cli(["check-config", "--config", str(REPO / "config" / "example.yaml")])
    assert result.code == 0, result.stderr
    assert "conda-forge:" in result.stdout and "keep_latest: 3" in result.stdout
    assert "prefer_conda: true" in result.stdout


def test_a_terminal_gets_a_progress_line(tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    build_channel(tmp_path / "up", [PackageSpec(f"p{i}", "1.0") for i in range(5)])
    config = write_config(tmp_path, {"c": {"upstream": "up", "subdirs": ["noarch"]}})
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "mirror", "sync", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        cwd=REPO,
        timeout=60,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    screen = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "c/noarch [" in screen and "5/5 files" in screen and "MB/s" in screen
