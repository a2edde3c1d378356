"""The shipped Grafana dashboard and alerting rules read only what the daemon exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mirror.config.model import Schedule
from mirror.core.dangling import Dangling
from mirror.core.records import Refusal, RefusalReason
from mirror.reports import (
    CheckResult,
    DanglingReport,
    DropOutcome,
    DropResult,
    FileFailure,
    SubdirReport,
    SyncReport,
)
from mirror.service.metrics import MirrorMetrics
from tests.support.promql import SCRAPE_LABELS, Reads, reads

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "config" / "grafana" / "mirror-dashboard.json"
ALERTS = REPO / "config" / "prometheus" / "mirror-alerts.yml"


def exposition() -> str:
    """A daemon's metrics after it has done one of everything it records."""
    registry = CollectorRegistry()
    metrics = MirrorMetrics(registry)
    now = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
    metrics.set_schedules({"cf": Schedule(interval_minutes=60)}, now)
    failed = SubdirReport(
        "cf",
        "linux-64",
        "failed",
        3.0,
        upstream_status="error",
        error_reason="http_503",
        downloaded_files=2,
        downloaded_bytes=2048,
        failures=(FileFailure("a-1-0.conda", "hash_mismatch", "a-1-0.conda: sha256 differs"),),
        refused=(Refusal("b-1-0.conda", "name is not lowercase", RefusalReason.BAD_NAME),),
        retries={"reset": 2},
    )
    check = CheckResult("cf", "linux-64", ("numpy",), False, "nothing provides numpy", 0.1, 0.0)
    dangling = DanglingReport("cf", "linux-64", Dangling(4, ("python_abi",)))
    metrics.record_sync(
        "cf",
        SyncReport((failed,), ("cf: numpy needs openssl",), (check,), (dangling,)),
        3.0,
        now.timestamp(),
    )
    metrics.record_sync("cf", SyncReport((SubdirReport("cf", "noarch", "ok", 1.0),)), 1.0, 1e9)
    metrics.set_published("cf", "linux-64", 10, 4096)
    metrics.record_drop(
        "local", DropOutcome(Path("x-1-0.conda"), DropResult.QUARANTINED, reason="corrupt")
    )
    metrics.record_drop("local", DropOutcome(Path("y-1-0.conda"), DropResult.PUBLISHED, "noarch"))
    # the daemon's channel worker observes these two directly
    metrics.drop_to_visible.labels("local").observe(0.3)
    metrics.index_duration.labels("local").observe(0.1)
    metrics.watch_events.labels("created").inc()
    metrics.record_export("cf", 8192, 2.0, True)
    metrics.record_export("cf", 0, 0.5, False)
    return generate_latest(registry).decode()


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name the daemon exports (histogram suffixes included), with its labels."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", ())


def dashboard_expressions() -> list[tuple[str, str]]:
    found = [
        (f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"])
        for p in panels()
        for t in p.get("targets", ())
    ]
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]
        found.append((f"variable {variable['name']}", query.get("query", query)))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [
        (f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


def unexported(found: Reads, exported: dict[str, set[str]]) -> list[str]:
    """What an expression reads that the daemon does not export: names, then labels."""
    problems = []
    labels_in_reach = set(SCRAPE_LABELS)
    for name, labels in found.metrics.items():
        if name not in exported:
            problems.append(f"metric {name}")
            continue
        labels_in_reach |= exported[name]
        problems += [
            f"label {name}{{{label}}}" for label in labels - exported[name] - SCRAPE_LABELS
        ]
    problems += [f"label {label}" for label in found.grouping_labels - labels_in_reach]
    return problems


@pytest.mark.parametrize(
    ("where", "expr"), dashboard_expressions() + alert_expressions(), ids=lambda v: str(v)[:60]
)
def test_every_metric_and_label_an_expression_reads_is_one_the_daemon_exports(
    where: str, expr: str, exported: dict[str, set[str]]
) -> None:
    found = reads(expr)
    assert found.metrics, f"{where}: reads no metric: {expr}"
    assert unexported(found, exported) == [], f"{where}: {expr}"


def test_the_check_catches_a_misspelt_metric_a_bare_histogram_and_a_wrong_label(
    exported: dict[str, set[str]],
) -> None:
    assert unexported(reads("rate(conda_mirror_sync_run_total[5m])"), exported) == [
        "metric conda_mirror_sync_run_total"
    ]
    assert unexported(reads("conda_mirror_sync_duration_seconds > 1"), exported) == [
        "metric conda_mirror_sync_duration_seconds"
    ]
    assert unexported(reads('conda_mirror_solvable{platfrom="linux-64"} == 0'), exported) == [
        "label conda_mirror_solvable{platfrom}"
    ]
    assert unexported(reads("sum by (subdir) (conda_mirror_closure_problems)"), exported) == [
        "label subdir"
    ]


def test_every_dashboard_panel_has_a_unique_id_a_title_and_the_datasource_input() -> None:
    board = dashboard()
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel.get("title"), panel["id"]
        assert panel.get("datasource") == datasource, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["datasource"] == datasource for t in panel["targets"]), panel["title"]
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"


def test_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_channel_panel_follows_the_channel_variable(exported: dict[str, set[str]]) -> None:
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"channel", "instance"} <= variables
    for where, expr in dashboard_expressions():
        if where.startswith("variable"):
            continue
        for name in reads(expr).metrics:
            wanted = (
                '{instance=~"$instance", channel=~"$channel"}'
                if "channel" in exported[name]
                else '{instance=~"$instance"}'
            )
            uses = re.finditer(rf"(?<![\w:]){name}(?![\w:])(\{{[^}}]*\}})?", expr)
            assert all(use.group(1) == wanted for use in uses), f"{where}: {name}"
