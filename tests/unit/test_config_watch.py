"""Config of drop-folder watching: `watch.mode` and `watch.poll_interval_s` at top level, a
drop folder as a plain path or as `{path, mode, poll_interval_s}`; errors name file, line, key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mirror.config import load_config
from mirror.config.model import DropFolder, MirrorConfig, describe
from mirror.core.watch_modes import WatchMode
from mirror.errors import ConfigError

BASE = "root: tree\nstate_dir: state\nchannels:\n  local:\n    subdirs: [noarch]\n"


def load_text(tmp_path: Path, text: str) -> MirrorConfig:
    for name in ("in", "share", "other"):
        (tmp_path / name).mkdir(exist_ok=True)
    path = tmp_path / "mirror.yaml"
    path.write_text(text)
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


def test_without_watch_keys_folders_are_decided_automatically_and_polled_every_5_s(
    tmp_path: Path,
) -> None:
    config = load_text(tmp_path, BASE + "    drop_folders: [in]\n")
    assert config.service.watch_mode == WatchMode.AUTO
    assert config.service.poll_interval_s == 5.0
    assert config.channels[0].drop_folders == (DropFolder(tmp_path / "in", WatchMode.AUTO, 5.0),)


def test_folders_inherit_the_top_level_watch_values_unless_they_override_them(
    tmp_path: Path,
) -> None:
    config = load_text(
        tmp_path,
        "watch: {mode: poll, poll_interval_s: 2, settle_s: 0.5}\n"
        + BASE
        + "    drop_folders:\n"
        + "      - in\n"
        + "      - {path: share, mode: events}\n"
        + "      - {path: other, poll_interval_s: 0.25}\n",
    )
    assert config.service.settle_s == 0.5  # the existing keys keep their meaning
    assert config.channels[0].drop_folders == (
        DropFolder(tmp_path / "in", WatchMode.POLL, 2.0),
        DropFolder(tmp_path / "share", WatchMode.EVENTS, 2.0),
        DropFolder(tmp_path / "other", WatchMode.POLL, 0.25),
    )


def test_check_config_shows_the_configured_and_the_effective_mode(tmp_path: Path) -> None:
    config = load_text(tmp_path, BASE + "    drop_folders: [{path: in, mode: auto}]\n")
    described = describe(config, {("local", 0): "poll every 5 s (auto: nfs4 is a network fs)"})
    assert described["watch"] == {
        "settle_s": 1.0,
        "debounce_s": 0.3,
        "mode": "auto",
        "poll_interval_s": 5.0,
    }
    channels = described["channels"]
    assert isinstance(channels, dict)
    assert channels["local"]["drop_folders"] == [
        {
            "path": str(tmp_path / "in"),
            "mode": "auto",
            "poll_interval_s": 5.0,
            "watched_by": "poll every 5 s (auto: nfs4 is a network fs)",
        }
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "watch: {mode: inotify}\n" + BASE,
            r"mirror\.yaml:1: watch\.mode: expected one of auto, events, poll, got 'inotify'",
        ),
        (
            "watch:\n  poll_interval_s: 0\n" + BASE,
            r":2: watch\.poll_interval_s: must be at least 0\.05, got 0",
        ),
        (
            "watch:\n  poll_intervall_s: 3\n" + BASE,
            r":2: watch\.poll_intervall_s: unknown key; did you mean 'poll_interval_s'\?",
        ),
        (
            BASE + "    drop_folders:\n      - {path: in, mode: sometimes}\n",
            r":7: channels\.local\.drop_folders\[0\]\.mode: expected one of auto, events, poll",
        ),
        (
            BASE
            + "    drop_folders:\n      - in\n      - path: share\n        poll_interval_s: fast\n",
            r":9: channels\.local\.drop_folders\[1\]\.poll_interval_s: expected a number",
        ),
        (
            BASE + "    drop_folders:\n      - {mode: poll}\n",
            r":7: channels\.local\.drop_folders\[0\]: missing 'path'",
        ),
        (
            BASE + "    drop_folders:\n      - {path: in, interval: 3}\n",
            r":7: channels\.local\.drop_folders\[0\]\.interval: unknown key",
        ),
        (
            BASE + "    drop_folders:\n      - in\n      - {path: absent, mode: poll}\n",
            r":8: channels\.local\.drop_folders\[1\]\.path: drop folder .*absent does not exist",
        ),
        (
            BASE + "    drop_folders:\n      - in\n      - {path: in, mode: poll}\n",
            r":8: channels\.local\.drop_folders\[1\]\.path: drop folder .*in is listed twice",
        ),
        (
            BASE + "    drop_folders:\n      - [in]\n",
            r":7: channels\.local\.drop_folders\[0\]: expected a single value, got a list",
        ),
    ],
)
def test_watch_mistakes_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert re.search(expected, message), message
    assert message.startswith(str(tmp_path / "mirror.yaml"))
