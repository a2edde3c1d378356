"""Tokens never leave the process: not in logs at any level, errors, tracebacks, metrics,
status, verify or check-config output, the state directory or the published tree.

Secrets are planted in every form the config takes: an anaconda.org `/t/<token>/` URL
segment, a `user:password@` userinfo, and a bearer token read from `token_env`. Each is
looked for as written, URL-encoded, URL-decoded and base64-encoded (an HTTP Basic header)."""

from __future__ import annotations

import base64
import bz2
import io
import json
import logging
import signal
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import zstandard

from tests.conftest import CliResult, run_cli, world_specs, write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.upstream_server import UpstreamServer

TOKEN = "tk+7f3a9c1e5b2d-SECRETTOKEN"  # '+' so that its URL-encoded form differs
BEARER = "br-0d1e2f3a4b5c6d7e-SECRETBEARER"
USER = "mirroruser"
PASSWORD = "pw%21Secr3t-SECRETPASSWORD"  # as written in the URL; httpx sends it decoded
TOKEN_B = "tb-c0ffee1234abcd-SECRETB"
WRONG_TOKEN = "tw-baadf00d5678-SECRETWRONGTOKEN"
WRONG_BEARER = "bw-deadbeef9012-SECRETWRONGBEARER"
DEAD_TOKEN = "td-feedface3456-SECRETDEADTOKEN"
SECRETS = (TOKEN, BEARER, PASSWORD, TOKEN_B, WRONG_TOKEN, WRONG_BEARER, DEAD_TOKEN)
ENV = {"PRIV_BEARER": BEARER, "WRONG_BEARER": WRONG_BEARER}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_forms() -> set[str]:
    forms: set[str] = set()
    for secret in SECRETS:
        forms |= {secret, quote(secret, safe=""), unquote(secret), _b64(secret)}
        forms |= {_b64(f"Bearer {secret}"), _b64(f"{USER}:{unquote(secret)}")}
    forms.add("SECRET")  # every planted secret holds this marker: catches partial forms too
    return forms


FORMS = secret_forms()


def assert_no_secret(data: str | bytes, where: str) -> None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    leaked = sorted(form for form in FORMS if form in text)
    assert not leaked, f"{where} leaks {leaked}"


def readable_files(*folders: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file's bytes; compressed index files also decompressed, so nothing hides there."""
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            yield path, data
            if path.name.endswith(".zst"):
                yield path, zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
            elif path.name.endswith(".json.bz2"):
                yield path, bz2.decompress(data)


def assert_state_and_tree_clean(base: Path) -> None:
    files = list(readable_files(base / "state", base / "tree"))
    assert any(p.name == "catalog.sqlite" for p, _ in files)
    assert any(p.name == "repodata.json" for p, _ in files)
    for path, data in files:
        assert_no_secret(data, str(path))
    with sqlite3.connect(base / "state" / "catalog.sqlite") as db:
        dump = "\n".join(db.iterdump())
    assert "sync_runs" in dump
    assert_no_secret(dump, "catalog dump")


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[tuple[UpstreamServer, UpstreamServer]]:
    """A: a private channel wanting a /t/ token AND a bearer; B: a /t/ token, userinfo sent."""
    build_channel(tmp_path / "up_a", world_specs())
    build_channel(tmp_path / "up_b", [PackageSpec("bpkg", "1.0"), PackageSpec("bpkg", "1.1")])
    with (
        UpstreamServer(tmp_path / "up_a", token=TOKEN, bearer=BEARER) as a,
        UpstreamServer(tmp_path / "up_b", token=TOKEN_B) as b,
    ):
        yield a, b


def channels(a: UpstreamServer, b: UpstreamServer, **extra: object) -> dict[str, dict[str, object]]:
    both = ["linux-64", "noarch"]
    return {
        "priv": {"upstream": a.url, "token_env": "PRIV_BEARER", "subdirs": both, **extra},
        "basic": {
            "upstream": f"http://{USER}:{PASSWORD}@127.0.0.1:{b.port}/t/{TOKEN_B}",
            "subdirs": ["noarch"],
            **extra,
        },
        "wrongtoken": {  # 403
            "upstream": f"{a.base_url}/t/{WRONG_TOKEN}",
            "token_env": "PRIV_BEARER",
            "subdirs": both,
            **extra,
        },
        "wrongbearer": {"upstream": a.url, "token_env": "WRONG_BEARER", "subdirs": both, **extra},
        "dead": {  # connection refused
            "upstream": f"http://127.0.0.1:{free_port()}/t/{DEAD_TOKEN}",
            "subdirs": ["noarch"],
            **extra,
        },
    }


def add_faults(a: UpstreamServer, b: UpstreamServer) -> None:
    """Failures on every path that builds a message from a URL (retries: 1, so count 2)."""
    a.add_fault("/noarch/repodata.json.zst", "500", count=2)
    a.add_fault("/linux-64/zlib-1.3.1-h0_0.conda", "corrupt", count=2)
    a.add_fault("/linux-64/libfoo-1.9-h1_0.conda", "reset", count=2)
    a.add_fault("/linux-64/tool-0.5-h2_0.conda", "404")
    b.add_fault("/noarch/bpkg-1.1-0.conda", "truncate", count=2)


def cli(base: Path, *args: str) -> CliResult:
    return run_cli([*args, "--config", str(base / "mirror.yaml")], env=ENV, timeout=60)


def test_cli_runs_that_fail_every_way_and_then_succeed_never_show_a_secret(
    tmp_path: Path, upstreams: tuple[UpstreamServer, UpstreamServer]
) -> None:
    a, b = upstreams
    write_config(tmp_path, channels(a, b), retries=1, connect_timeout_s=2)
    add_faults(a, b)
    failing = cli(tmp_path, "sync", "--log-level", "DEBUG")
    a.clear_faults()
    b.clear_faults()
    good = cli(tmp_path, "sync", "--log-level", "DEBUG")
    dry = cli(tmp_path, "sync", "--dry-run", "--log-level", "DEBUG")

    # the failures really happened, and their messages show the URL, masked
    assert failing.code == 1
    for shown in (
        " DEBUG ",
        "/t/***/",
        f"{USER}:***@",
        "access denied (HTTP 403)",
        "access denied (HTTP 401)",
        "cannot connect",
        "upstream error (HTTP 500)",
        "checksum mismatch",
        "not found upstream (HTTP 404)",
        "bpkg-1.1-0.conda",
    ):
        assert shown in failing.stderr, shown
    assert a.count("*", status=200) > 0 and b.count("*", status=200) > 0
    assert good.code == 1  # the wrong-token and dead channels still fail
    assert "INFO priv/linux-64: ok" in good.stderr and "INFO basic/noarch: ok" in good.stderr
    tree = tmp_path / "tree"
    assert (tree / "priv" / "linux-64" / "zlib-1.3.1-h0_0.conda").exists()
    assert (tree / "basic" / "noarch" / "bpkg-1.1-0.conda").exists()

    status = cli(tmp_path, "status")
    status_json = cli(tmp_path, "status", "--json")
    rows = {(r["channel"], r["subdir"]): r for r in json.loads(status_json.stdout)}
    assert rows[("wrongtoken", "linux-64")]["last_outcome"] == "failed"
    assert rows[("priv", "linux-64")]["packages"] == 6

    clean = cli(tmp_path, "verify", "--channel", "priv", "--channel", "basic", "--full")
    assert clean.code == 0, clean.stdout + clean.stderr
    victim = tree / "priv" / "linux-64" / "libfoo-1.10-h1_0.conda"
    victim.write_bytes(b"\0" * victim.stat().st_size)
    problem = cli(tmp_path, "verify", "--channel", "priv", "--full", "--log-level", "DEBUG")
    assert problem.code == 1 and "problem: priv/linux-64/libfoo-1.10-h1_0.conda" in problem.stdout
    a.clear_log()
    a.add_fault("/linux-64/repodata.json.zst", "500", count=1)  # a retried error in repair too
    repair = cli(tmp_path, "verify", "--channel", "priv", "--repair", "--log-level", "DEBUG")
    assert repair.code == 0, repair.stdout + repair.stderr
    assert a.count("/linux-64/libfoo-1.10-h1_0.conda", status=200) == 1  # fetched with the token

    check = cli(tmp_path, "check-config")
    assert check.code == 0 and "/t/***" in check.stdout and f"{USER}:***@" in check.stdout
    assert "token_env: PRIV_BEARER" in check.stdout

    for name, result in {
        "failing sync": failing,
        "good sync": good,
        "dry run": dry,
        "status": status,
        "status --json": status_json,
        "verify": clean,
        "verify with a problem": problem,
        "verify --repair": repair,
        "check-config": check,
    }.items():
        assert_no_secret(result.stdout + result.stderr, name)
    assert_state_and_tree_clean(tmp_path)


def test_the_daemon_never_shows_a_secret_in_logs_metrics_or_status(
    tmp_path: Path, upstreams: tuple[UpstreamServer, UpstreamServer]
) -> None:
    a, b = upstreams
    port = free_port()
    schedule = {"interval_minutes": 60, "at_start": True}
    write_config(
        tmp_path,
        channels(a, b, schedule=schedule),
        retries=1,
        connect_timeout_s=2,
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    add_faults(a, b)
    with DaemonProcess(tmp_path / "mirror.yaml", tmp_path / "daemon.log", port) as daemon:
        daemon.start(env=ENV, args=["--log-level", "DEBUG"])
        for name in ("priv", "basic", "wrongtoken", "wrongbearer", "dead"):
            runs = partial(daemon.metric, "conda_mirror_sync_runs_total", channel=name)
            wait_for(partial(runs, outcome="failed"), timeout=30)
        metrics = daemon.metrics()
        status = cli(tmp_path, "status")
        status_json = cli(tmp_path, "status", "--json")
        daemon.signal(signal.SIGHUP)  # a reload logs the config it read
        wait_for(lambda: "configuration reloaded" in daemon.text())
        code, _seconds = daemon.stop()
    log = daemon.text()

    assert code == 0
    for shown in ("DEBUG", "/t/***/", "access denied (HTTP 403)", "access denied (HTTP 401)"):
        assert shown in log, shown
    assert "cannot connect" in log and "checksum mismatch" in log
    errors = [line for line in metrics.splitlines() if "download_errors_total{" in line]
    assert any('channel="wrongtoken"' in line for line in errors), errors
    assert any('reason="hash_mismatch"' in line for line in errors), errors
    assert json.loads(status_json.stdout) and "priv/linux-64" in status.stdout
    assert_no_secret(log, "daemon log")
    assert_no_secret(metrics, "/metrics")
    assert_no_secret(status.stdout + status.stderr, "status")
    assert_no_secret(status_json.stdout + status_json.stderr, "status --json")
    assert_state_and_tree_clean(tmp_path)


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        (f"http://127.0.0.1:8080/chan?token={TOKEN}", "query string"),
        (f"http://127.0.0.1:8080/chan#{TOKEN}", "query string"),
        (f"http://{USER}:{PASSWORD}@127.0.0.1:99999/t/{TOKEN}", "port"),
    ],
)
def test_an_upstream_url_that_cannot_be_shown_masked_is_refused_without_echoing_it(
    tmp_path: Path, upstream: str, expected: str
) -> None:
    write_config(tmp_path, {"c": {"upstream": upstream, "subdirs": ["noarch"]}})
    for command in ("check-config", "sync"):
        result = cli(tmp_path, command, "--log-level", "DEBUG")
        assert result.code == 2, result.stdout + result.stderr
        assert "channels.c.upstream" in result.stderr and expected in result.stderr
        assert_no_secret(result.stdout + result.stderr, command)


def test_a_config_error_beside_a_token_does_not_echo_the_token(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {"c": {"upstream": f"https://conda.example/t/{TOKEN}/org", "subdirs": ["noarch", "x y"]}},
    )
    assert TOKEN in path.read_text()
    result = cli(tmp_path, "check-config")
    assert result.code == 2 and "channels.c.subdirs[1]" in result.stderr
    assert_no_secret(result.stdout + result.stderr, "check-config")


def test_a_traceback_through_the_cli_logging_masks_token_urls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mirror.cli.logs import setup_logging

    root = logging.getLogger()
    level = root.level
    formatter = setup_logging("DEBUG")
    try:
        try:
            try:
                raise ConnectionError(f"GET https://conda.example/t/{TOKEN}/org/noarch failed")
            except ConnectionError as inner:
                raise RuntimeError("fetch failed") from inner
        except RuntimeError:
            logging.getLogger("mirror.test").exception("internal error")
        logging.getLogger("httpx").debug("HTTP Request: GET https://h/t/%s/x", TOKEN)
        logging.getLogger("httpcore.http11").debug("send_request_headers %s", BEARER)
    finally:
        root.handlers[:] = [h for h in root.handlers if h.formatter is not formatter]
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "ConnectionError" in err and "RuntimeError" in err and "/t/***/org" in err
    assert_no_secret(err, "traceback")
