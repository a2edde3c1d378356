"""The daemon's status page, loaded in a real headless Chromium: it names every channel, shows a
failed sync as failed with its message, logs no console error, and its /status.json is what
`mirror status --json` prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import run_cli
from tests.support.browser import Chromium, find_chromium
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.upstream_server import UpstreamServer

CHROMIUM = find_chromium()
# a drop whose name is markup: it is quarantined, and its name and reason are shown as text
HOSTILE_DROP = "\"><img src=x onerror=alert(1)>'.conda"


@pytest.fixture
def failing_upstream(upstream_dir: Path) -> Iterator[UpstreamServer]:
    """The same channel, but every request answers 500."""
    with UpstreamServer(upstream_dir) as srv:
        srv.add_fault("*", "500", count=1_000_000)
        yield srv


@pytest.fixture
def daemon(
    tmp_path: Path, server: UpstreamServer, failing_upstream: UpstreamServer
) -> Iterator[tuple[DaemonProcess, str]]:
    (tmp_path / "drops").mkdir()
    (tmp_path / "drops" / HOSTILE_DROP).write_bytes(b"not a package")
    port = free_port()
    schedule = {"interval_minutes": 60, "at_start": True}
    document = {
        "root": "tree",
        "state_dir": "state",
        "retry_backoff_s": 0.01,
        "retries": 1,
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "watch": {"settle_s": 0.3, "debounce_s": 0.1},
        "channels": {
            "up": {"upstream": server.url, "subdirs": ["linux-64", "noarch"], "schedule": schedule},
            "broken": {
                "upstream": failing_upstream.url,
                "subdirs": ["linux-64", "noarch"],
                "schedule": schedule,
            },
            "local": {"subdirs": ["noarch"], "drop_folders": ["drops"]},
        },
    }
    config = tmp_path / "mirror.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    with DaemonProcess(config, tmp_path / "daemon.log", port) as process:
        process.start()
        runs = "conda_mirror_sync_runs_total"
        wait_for(lambda: process.metric(runs, channel="up", outcome="ok"), timeout=60)
        wait_for(lambda: process.metric(runs, channel="broken", outcome="failed"), timeout=60)
        wait_for(lambda: list((tmp_path / "state" / "quarantine").rglob("*.reason")))
        yield process, f"http://127.0.0.1:{port}"
        process.stop()


def status_cli(config: Path) -> object:
    result = run_cli(["status", "--config", str(config), "--json"])
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_status_json_is_what_mirror_status_json_prints(daemon, tmp_path: Path) -> None:
    _process, url = daemon
    served = httpx.get(f"{url}/status.json", timeout=10)
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert served.json() == status_cli(tmp_path / "mirror.yaml")
    rows = {(r["channel"], r["subdir"]): r for r in served.json()}
    assert rows[("broken", "linux-64")]["last_outcome"] == "failed"
    assert "500" in rows[("broken", "linux-64")]["last_message"]
    assert rows[("up", "linux-64")]["repodata_source"].endswith("/linux-64/repodata.json.zst")
    assert rows[("local", "(drops)")]["quarantined_files"][0]["filename"] == HOSTILE_DROP


def test_one_listener_serves_the_page_metrics_and_404(daemon) -> None:
    _process, url = daemon
    metrics = httpx.get(f"{url}/metrics", timeout=10)
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'conda_mirror_sync_runs_total{channel="broken",outcome="failed"}' in metrics.text
    openmetrics = httpx.get(
        f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    page = httpx.get(f"{url}/", timeout=10)
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert httpx.get(f"{url}/nothing-here", timeout=10).status_code == 404


@pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian package chromium) not installed")
def test_the_page_in_a_real_browser(daemon, tmp_path: Path) -> None:
    _process, url = daemon
    assert CHROMIUM is not None
    with Chromium(CHROMIUM, tmp_path / "browser") as browser:
        page = browser.open(f"{url}/")
        assert page.http_status() == 200
        channels = page.evaluate(
            "[...document.querySelectorAll('section.channel')].map(s => "
            "({name: s.dataset.channel, state: s.dataset.state, "
            "heading: s.querySelector('h2').innerText}))"
        )
        failed = page.evaluate(_FAILED_ROW_PROBE)
        hostile = page.evaluate(
            "({images: document.images.length, "
            "drops: document.querySelector('tr.detail[data-subdir=\"(drops)\"]').innerText})"
        )
        refresh = page.evaluate(
            "document.querySelector('meta[http-equiv=refresh]').getAttribute('content')"
        )
        shot = page.screenshot(tmp_path / "status-page.png")
        errors = page.console_errors()

    assert errors == []
    assert [c["name"] for c in channels] == ["up", "broken", "local"]
    assert all(c["heading"].startswith(c["name"]) for c in channels)
    assert {c["name"]: c["state"] for c in channels}["broken"] == "failed"
    assert {c["name"]: c["state"] for c in channels}["up"] == "ok"
    # the failed row is marked, its badge is red, and the message is on screen, not hidden
    assert failed["rowClass"] == "subdir state-failed"
    assert failed["badge"] == "failed" and failed["badgeColor"] == "rgb(198, 40, 40)"
    assert failed["messageShown"] and "500" in failed["message"], failed
    assert failed["message"].startswith("Sync failed:")
    # a drop named like markup is text on the page, not an element
    assert hostile["images"] == 0 and HOSTILE_DROP in hostile["drops"]
    assert refresh == "30"
    assert shot.stat().st_size > 10_000


_FAILED_ROW_PROBE = """(() => {
  const section = document.querySelector('section.channel[data-channel="broken"]');
  const row = section.querySelector('tr.subdir[data-subdir="linux-64"]');
  const badge = row.querySelector('.outcome .badge');
  const message = section.querySelector('tr.detail[data-subdir="linux-64"] .message');
  const box = message.getBoundingClientRect();
  const style = getComputedStyle(message);
  return {
    rowClass: row.className,
    badge: badge.innerText,
    badgeColor: getComputedStyle(badge).backgroundColor,
    message: message.innerText,
    messageShown: box.width > 0 && box.height > 0 && style.visibility === 'visible'
      && style.display !== 'none',
  };
})()"""


def test_a_channel_without_upstream_shows_only_its_real_subdirs(daemon, tmp_path: Path) -> None:
    """channeldata.json sits at the channel root, in no subdir: no row, gauge or page line for
    a subdir named ""."""
    _process, url = daemon
    wait_for(lambda: (tmp_path / "tree" / "local" / "channeldata.json").exists())
    served = httpx.get(f"{url}/status.json", timeout=10).json()
    assert {r["subdir"] for r in served if r["channel"] == "local"} == {"noarch", "(drops)"}
    assert "local/ " not in run_cli(["status", "--config", str(tmp_path / "mirror.yaml")]).stdout
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'conda_mirror_published_packages{channel="local",subdir="noarch"}' in metrics
    assert 'subdir=""' not in metrics
    assert 'data-subdir=""' not in httpx.get(f"{url}/", timeout=10).text
