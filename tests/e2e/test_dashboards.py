"""The shipped alerting rules and dashboard queries go through promtool as Prometheus reads them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.promql import substitute_grafana_variables

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "config" / "prometheus"
DASHBOARD = REPO / "config" / "grafana" / "mirror-dashboard.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    return found


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_alerting_rules_pass_promtool_check(promtool: str) -> None:
    result = run([promtool, "check", "rules", "mirror-alerts.yml"], RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_each_alert_fires_on_its_case_and_stays_quiet_otherwise(promtool: str) -> None:
    result = run([promtool, "test", "rules", "mirror-alerts.test.yml"], RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_sees_it_fire_and_one_that_does_not() -> None:
    rules = yaml.safe_load((RULES_DIR / "mirror-alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((RULES_DIR / "mirror-alerts.test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", ())
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", ())
        if not case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in rules}
    assert firing == alerts
    assert quiet == alerts
    for rule in rules:
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def test_every_dashboard_query_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule promtool
    parses (label_values(...) of the variables: its selector)."""
    board = json.loads(DASHBOARD.read_text())
    queries = {
        f"dashboard:panel{panel['id']}_{target['refId']}": target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", ())
    }
    for variable in board["templating"]["list"]:
        selector = re.fullmatch(r"label_values\((.*), *\w+\)", variable["query"]["query"])
        assert selector, variable["name"]
        queries[f"dashboard:variable_{variable['name']}"] = selector.group(1)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": name, "expr": substitute_grafana_variables(expr)}
                    for name, expr in queries.items()
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    result = run([promtool, "check", "rules", "dashboard.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
