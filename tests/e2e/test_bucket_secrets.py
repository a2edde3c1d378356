"""The bucket's credentials (from the AWS environment) never leave the process: not in a log
at DEBUG, an error, /metrics, the status page, /status.json, `mirror status [--json]`,
`check-config`, the state directory or any object in the bucket.

The gateway's `denied` fault answers 403 SignatureDoesNotMatch with the body AWS sends, which
echoes the canonical request, session token and access key id included: a client that
repeats a server's error message would leak them."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import httpx

from tests.conftest import CliResult, run_cli
from tests.support.bucket_site import PREFIX, bucket_config, published
from tests.support.builder import PackageSpec, build_channel, package_bytes
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.s3_server import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SESSION_TOKEN,
    S3Bucket,
    environment,
)
from tests.support.upstream_server import UpstreamServer

SECRETS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
FORMS = {form for s in SECRETS for form in (s, base64.b64encode(s.encode()).decode())}


def assert_no_secret(data: str | bytes, where: str) -> None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    leaked = sorted(form for form in FORMS if form in text)
    assert not leaked, f"{where} leaks {leaked}"


def cli(*args: str) -> CliResult:
    return run_cli([*args, "--log-level", "DEBUG"], env=environment())


def test_no_credential_shows_in_logs_errors_metrics_status_or_the_tree(
    tmp_path: Path, s3: S3Bucket
) -> None:
    build_channel(tmp_path / "upstream", [PackageSpec("up", "1.0"), PackageSpec("up", "1.1")])
    (tmp_path / "drops").mkdir()
    port = free_port()
    with UpstreamServer(tmp_path / "upstream") as server:
        config = bucket_config(
            tmp_path, s3,
            {"up": {"upstream": server.url, "subdirs": ["noarch"],
                    "schedule": {"interval_minutes": 60, "at_start": True}},
             "local": {"subdirs": ["noarch"], "drop_folders": ["drops"]}},
            metrics={"listen": f"127.0.0.1:{port}"}, watch={"settle_s": 0.1, "debounce_s": 0.05},
        )  # fmt: skip
        outputs: dict[str, str] = {}
        s3.gateway.fail_randomly(1.0, ["denied"])  # every request refused, the body echoing
        denied = cli("sync", "--config", str(config))
        s3.gateway.heal()
        assert denied.code != 0 and "was refused (HTTP 403" in denied.stderr  # said plainly
        outputs["sync refused"] = denied.stdout + denied.stderr
        outputs["check-config"] = _text(cli("check-config", "--config", str(config)))

        with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
            daemon.start(env=environment(), args=["--log-level", "DEBUG"])
            wait_for(lambda: published(s3.bucket(PREFIX), "up", "noarch"))
            s3.gateway.fail_next(*["denied"] * 12)  # the next drop's requests are refused
            drop = PackageSpec("dropped", "1.0")
            (tmp_path / "drops" / drop.filename).write_bytes(package_bytes(drop))
            wait_for(lambda: "drops failed" in daemon.text() or "refused" in daemon.text())
            s3.gateway.heal()
            base = f"http://127.0.0.1:{port}"
            for path in ("/", "/status.json", "/metrics"):
                outputs[path] = httpx.get(base + path, timeout=10).text
            outputs["status"] = _text(cli("status", "--config", str(config)))
            outputs["status --json"] = _text(cli("status", "--json", "--config", str(config)))
            code, _ = daemon.stop()
        outputs["daemon log"] = daemon.text()
    outputs["verify"] = _text(cli("verify", "--full", "--config", str(config)))

    assert code == 0, outputs["daemon log"]
    assert "conda_mirror_" in outputs["/metrics"] and "up" in outputs["status --json"]
    assert "DEBUG" in outputs["daemon log"]
    for where, text in outputs.items():
        assert_no_secret(text, where)
    for path in sorted((tmp_path / "state").rglob("*")):
        if path.is_file():
            assert_no_secret(path.read_bytes(), str(path))
    with sqlite3.connect(tmp_path / "state" / "catalog.sqlite") as db:
        assert_no_secret("\n".join(db.iterdump()), "catalog dump")
    bucket = s3.bucket(PREFIX)
    for key in bucket.walk(""):
        assert_no_secret(bucket.get_bytes(key), f"object {key}")


def _text(result: CliResult) -> str:
    return result.stdout + result.stderr
