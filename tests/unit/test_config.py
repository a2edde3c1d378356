"""Config: the shipped files load, and every mistake names file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mirror.config import load_config, resolve_config_path
from mirror.errors import ConfigError
from tests.conftest import REPO


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "mirror.yaml"
    path.write_text(text)
    (tmp_path / "up").mkdir(exist_ok=True)
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


BASE = "root: tree\nstate_dir: state\nchannels:\n  c:\n    upstream: up\n    subdirs: [noarch]\n"


@pytest.mark.parametrize("name", ["example.yaml", "demo.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(REPO / "config" / name)
    assert config.channels
    assert not config.state_dir.is_relative_to(config.root)


def test_example_config_covers_every_filter_rule() -> None:
    rules = load_config(REPO / "config" / "example.yaml").channel("conda-forge").filters
    assert rules.include and rules.exclude and rules.license_deny
    assert rules.not_older_than_ms and rules.cooldown_days and rules.max_package_size_bytes
    assert rules.keep_latest == 3 and rules.prefer_conda


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, BASE)
    assert config.root == tmp_path / "tree"
    assert config.state_dir == tmp_path / "state"
    assert config.channels[0].upstream == (tmp_path / "up").as_uri()


def test_mirror_config_variable_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_CONFIG", "/some/where.yaml")
    assert resolve_config_path(None) == Path("/some/where.yaml")
    assert resolve_config_path("x.yaml") == Path("x.yaml").absolute()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BASE + "    keep_lastest: 2\n",
            r":7: channels\.c\.keep_lastest: unknown key; did you mean 'keep_latest'\?",
        ),
        (
            BASE.replace("root: tree", "roots: tree"),
            r":1: roots: unknown key; did you mean 'root'\?",
        ),
        (
            BASE + "    keep_latest: three\n",
            r":7: channels\.c\.keep_latest: expected a whole number, got 'three'",
        ),
        (BASE + "    keep_latest: 0\n", r":7: channels\.c\.keep_latest: must be at least 1"),
        (BASE + "    include: numpy\n", r":7: channels\.c\.include: expected a list"),
        (BASE + "    include: ['numpy >=>1']\n", r":7: channels\.c\.include\[0\]: invalid spec"),
        (BASE + "    include: ['conda-forge::numpy']\n", r"channel-qualified"),
        (
            BASE + "    prefer_conda: yes please\n",
            r":7: channels\.c\.prefer_conda: expected true or false",
        ),
        (BASE + "    max_package_size: lots\n", r"expected a size such as 500MB"),
        (BASE + "    not_older_than: last tuesday\n", r"expected a date such as 2024-01-31"),
        (BASE + "    licenses: {allow: MIT}\n", r"channels\.c\.licenses\.allow: expected a list"),
        (
            BASE + "    subdirs: [linux-64]\n",
            r":7: channels\.c\.subdirs: duplicate key \(first at line 6\)",
        ),
        (
            BASE.replace("[noarch]", "[Linux_64]"),
            r"channels\.c\.subdirs\[0\]: 'Linux_64' is not a conda subdir",
        ),
        (BASE.replace("[noarch]", "[]"), r"list at least one subdir"),
        (
            BASE + "    repodata_source: sharded\n",
            r":7: channels\.c\.repodata_source: expected one of auto, shards, full, got 'sharded'",
        ),
        (BASE.replace("upstream: up", "upstream: ftp://x/y"), r"unsupported URL scheme 'ftp'"),
        (
            BASE.replace("upstream: up", "upstream: missing-dir"),
            r"local upstream .*missing-dir does not exist",
        ),
        (BASE.replace("state_dir: state", "state_dir: tree/state"), r":2: state_dir: .* overlap"),
        (BASE.replace("  c:", "  ../evil:"), r"channel name becomes a folder"),
        ("root: tree\nstate_dir: s\n", r"missing required key 'channels'"),
        ("root: [unclosed\n", r":2: invalid YAML: expected .,. or .\]."),
        ("", r"config file is empty"),
        ("- a list\n", r"expected a mapping"),
        (BASE + "workers: -1\n", r":7: workers: must be at least 1"),
        (BASE + "max_delete_fraction: 2\n", r"max_delete_fraction: must be at most 1.0"),
        (BASE + "    token_env: 'not a name'\n", r"expected the NAME of an environment variable"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "mirror.yaml"))
    assert re.search(expected, message), message


def test_a_token_in_the_url_never_appears_in_config_errors(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value"
    message = error_of(tmp_path, BASE.replace("upstream: up", f"upstream: 'https:///t/{secret}/c'"))
    assert secret not in message


def test_sizes_dates_and_overrides(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        BASE + "    max_package_size: 1.5GiB\n"
        "    not_older_than: 2024-01-31\n    workers: 2\n    cooldown_days: 3\n"
        "retries: 7\nfree_space_margin: 10MB\n",
    )
    channel = config.channels[0]
    assert channel.filters.max_package_size_bytes == int(1.5 * 2**30)
    assert channel.filters.not_older_than_ms == 1706659200000
    assert channel.transfer.workers == 2 and channel.transfer.retries == 7
    assert config.free_space_margin_bytes == 10_000_000


CLOSURE = (
    "root: tree\nstate_dir: state\nchannels:\n  c:\n    upstream: up\n"
    "    subdirs: [linux-64, noarch]\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("    dependencies: everything\n",
         ":7: channels.c.dependencies: expected one of none, solve, all"),
        ("    dependencies: {platforms: [linux-64]}\n", "channels.c.dependencies: missing 'mode'"),
        ("    dependencies: {mode: all, platforms: [win-64]}\n",
         "channels.c.dependencies.platforms[0]: platform 'win-64' must be one of this channel's"),
        ("    dependencies: {mode: all, platform: [linux-64]}\n", "did you mean 'platforms'?"),
        ("    dependencies: {mode: all, channels: [nowhere]}\n",
         "names 'nowhere', which is not another mirrored channel"),
        ("    dependencies: {mode: solve, variants: [[python >>3]]}\n",
         "invalid spec 'python >>3'"),
        ("    dependencies: {mode: all, virtual_packages: {linux-64: [glibc=2.17]}}\n",
         "write a virtual package as __name=version[=build]"),
        ("    include: ['py*']\n    dependencies: solve\n",
         "include 'py*' cannot be solved for (a name glob)"),
        ("    lockfiles: [nothere.lock]\n", "lockfile"),
        ("    check: maybe\n", "channels.c.check: expected true or false"),
        ("    check: {specs: [numpy], platform: [linux-64]}\n", "did you mean 'platforms'?"),
    ],
)  # fmt: skip
def test_closure_settings_mistakes_name_file_line_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = error_of(tmp_path, CLOSURE + text)
    assert str(tmp_path / "mirror.yaml") in message
    assert expected in message


def test_closure_settings_load(tmp_path: Path) -> None:
    (tmp_path / "env.lock").write_text("@EXPLICIT\n")
    config = load_text(tmp_path, CLOSURE + (
        "    include: [numpy]\n"
        "    dependencies:\n      mode: solve\n      variants: [[python 3.12.*], python 3.13.*]\n"
        "      virtual_packages: {linux-64: [__glibc=2.17, __cuda=12.4=0]}\n"
        "    lockfiles: [env.lock]\n    check: true\n"
    ))  # fmt: skip
    channel = config.channels[0]
    assert channel.dependencies.mode == "solve"
    assert channel.dependencies.variants == (("python 3.12.*",), ("python 3.13.*",))
    assert channel.dependencies.virtual_packages_for("linux-64") == (
        "__glibc=2.17",
        "__cuda=12.4=0",
    )
    assert channel.platforms == ("linux-64",)
    assert channel.lockfiles == (tmp_path / "env.lock",)
    assert channel.check is not None and channel.check.specs == ()


@pytest.mark.parametrize(
    "url",
    [
        "http://u:hunter2pass@[::1:bad/channel",  # urllib: "Invalid IPv6 URL"
        "https://[::1/channel",
        "http://host]:80/channel",
    ],
)
def test_a_url_urllib_cannot_split_is_a_config_error_naming_the_key(
    tmp_path: Path, url: str
) -> None:
    text = BASE.replace("upstream: up", f'upstream: "{url}"')
    message = error_of(tmp_path, text)
    assert re.match(
        rf"{re.escape(str(tmp_path / 'mirror.yaml'))}:5: channels\.c\.upstream:", message
    )
    assert "not a valid URL" in message
    assert "hunter2pass" not in message


@pytest.mark.parametrize("key", ["root", "state_dir"])
def test_a_root_or_state_dir_that_is_a_file_is_a_config_error(tmp_path: Path, key: str) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    text = BASE.replace(f"{key}: {'tree' if key == 'root' else 'state'}", f"{key}: blocker")
    message = error_of(tmp_path, text)
    assert f": {key}:" in message
    assert "not a directory" in message


def test_repodata_source_defaults_to_auto_and_check_config_shows_it(tmp_path: Path) -> None:
    from mirror.config.model import describe

    config = load_text(tmp_path, BASE)
    assert config.channels[0].repodata_source == "auto"
    chosen = load_text(tmp_path, BASE + "    repodata_source: full\n")
    assert describe(chosen)["channels"]["c"]["repodata_source"] == "full"
