"""The systemd units and the nginx example, checked with the real tools where installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, run_cli
from tests.support.builder import PackageSpec, build_package
from tests.support.daemon_proc import free_port, wait_for
from tests.support.rattler_client import solve_and_install

UNITS = ("mirror.service", "mirror-sync.service", "mirror-sync.timer")


def installed_units(tmp_path: Path) -> list[Path]:
    """Copies whose ExecStart names this machine's `mirror` (verify checks it is executable)."""
    executable = shutil.which("mirror") or str(Path(sys.executable).parent / "mirror")
    copies = []
    for name in UNITS:
        text = (REPO / "systemd" / name).read_text().replace("/usr/local/bin/mirror", executable)
        (tmp_path / name).write_text(text)
        copies.append(tmp_path / name)
    return copies


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, installed_units(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mirror" not in result.stderr, result.stderr  # no warnings about our units


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["mirror.service", "mirror-sync.service"])
def test_services_are_rated_ok_by_systemd_analyze_security(tmp_path: Path, unit: str) -> None:
    installed_units(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0 and match.group(2) in ("OK", "SAFE"), match.group(0)


def test_units_run_the_documented_commands() -> None:
    service = (REPO / "systemd" / "mirror.service").read_text()
    assert "Type=notify" in service and "mirror daemon --config" in service
    assert "ExecReload=/bin/kill -HUP $MAINPID" in service
    timer_service = (REPO / "systemd" / "mirror-sync.service").read_text()
    assert "mirror sync --final-zst --config" in timer_service
    assert "OnCalendar=" in (REPO / "systemd" / "mirror-sync.timer").read_text()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A real nginx on 127.0.0.1 serving a tree made by `mirror index` with config/nginx.conf."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.skip("nginx not installed (Debian package nginx-light)")
    tree = tmp_path / "tree"
    channel = tree / "local"
    for spec in [
        PackageSpec("libz", "1.3", subdir="linux-64", build="h0_0"),
        PackageSpec("app", "2.0", subdir="linux-64", build="h1_0", depends=("libz",)),
        PackageSpec("docs", "1.0"),
    ]:
        build_package(spec, channel / spec.subdir)
    result = run_cli(["index", str(channel), "--state-dir", str(tmp_path / "state")])
    assert result.code == 0, result.stderr
    (channel / "linux-64" / ".mirror-deadbeef.tmp").write_bytes(b"half written")
    port = free_port()
    server = (REPO / "config" / "nginx.conf").read_text()
    server = server.replace("listen 80;", f"listen 127.0.0.1:{port};")
    server = server.replace("root /srv/conda;", f"root {tree};")
    prefix = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    (prefix / "server.conf").write_text(server)
    access_log = prefix / "logs" / "access.log"
    user = "user root;" if os.geteuid() == 0 else ""  # tmp_path is private to root here
    (prefix / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {access_log};
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    include {prefix}/server.conf;
}}
""")
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: httpx.get(f"{base}/local/noarch/repodata.json", timeout=1).status_code == 200,
            timeout=10,
        )
        yield base, channel, access_log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nginx_sends_the_cache_headers_and_hides_dotfiles(nginx) -> None:
    base, channel, _ = nginx
    repodata = httpx.get(f"{base}/local/linux-64/repodata.json")
    assert repodata.headers["cache-control"] == "public, max-age=60, must-revalidate"
    assert repodata.headers["etag"] and repodata.headers["last-modified"]
    again = httpx.get(
        f"{base}/local/linux-64/repodata.json", headers={"If-None-Match": repodata.headers["etag"]}
    )
    assert again.status_code == 304
    index = httpx.get(f"{base}/local/linux-64/repodata_shards.msgpack.zst")
    assert index.headers["cache-control"] == "public, max-age=60, must-revalidate"
    shard = next((channel / "linux-64" / "shards").iterdir()).name
    response = httpx.get(f"{base}/local/linux-64/shards/{shard}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert httpx.get(f"{base}/local/linux-64/.mirror-deadbeef.tmp").status_code == 404
    package = httpx.get(f"{base}/local/linux-64/libz-1.3-h0_0.conda")
    assert package.headers["cache-control"] == "public, max-age=86400"


def test_rattler_installs_over_http_from_nginx_using_shards(nginx, tmp_path: Path) -> None:
    base, _, access_log = nginx
    names = solve_and_install(
        [f"{base}/local"], ["app"], ["linux-64", "noarch"], tmp_path / "env", tmp_path / "cache"
    )
    assert names == {"app", "libz"}
    assert (tmp_path / "env" / "share" / "app" / "2.0.txt").exists()
    time.sleep(0.2)  # nginx writes the access log line after the response
    log = access_log.read_text()
    assert "/local/linux-64/repodata_shards.msgpack.zst" in log
    assert re.search(r"/local/linux-64/shards/[0-9a-f]{64}\.msgpack\.zst", log)
