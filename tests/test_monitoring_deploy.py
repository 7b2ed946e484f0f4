"""The Prometheus configuration, alert rules and Grafana dashboard under deploy/, checked with promtool.

On CI (the CI variable set) promtool must be there: `.ci/run` installs Debian's `prometheus` package.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from prometheus_client import CollectorRegistry

from analytics.metrics import JobMetrics
from analytics.scheduler import INTRADAY, NIGHTLY
from bot.metrics import BotMetrics
from ingestion.bus.sink import SinkMetrics
from ingestion.metrics import IngestMetrics
from teston.core.monitoring import metric_names

DEPLOY = Path(__file__).parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
_METRIC_NAME = re.compile(r"\bteston_[a-z0-9_]+")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: install Debian's prometheus package (.ci/run does)")
        pytest.skip("promtool is not installed (apt-get install prometheus); CI requires it")
    return path


def run(promtool: str, *args: str | Path) -> str:
    done = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@functools.cache
def dashboard_module() -> ModuleType:
    """deploy/grafana/dashboard.py, which is a script beside the files it writes, not a package."""
    spec = importlib.util.spec_from_file_location("teston_grafana_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def alert_expressions() -> dict[str, str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def test_the_scrape_config_is_valid(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "check", "config", PROMETHEUS / "prometheus.yml")


def test_the_alert_rules_are_valid_and_their_unit_tests_pass(promtool: str) -> None:
    assert "SUCCESS: 8 rules found" in run(promtool, "check", "rules", PROMETHEUS / "alerts.yml")
    assert "SUCCESS" in run(promtool, "test", "rules", *sorted((PROMETHEUS / "tests").glob("*.yml")))


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, list[bool]] = {}
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    assert cases.keys() == alert_expressions().keys()
    for alert, fired in cases.items():
        assert True in fired, f"{alert} never fires in the tests"
        assert False in fired, f"{alert} is never tested quiet"


def test_the_committed_dashboard_is_the_generated_one() -> None:
    committed = (GRAFANA / "dashboards" / "teston.json").read_text(encoding="utf-8")
    assert dashboard_module().dashboard_json() == committed, (
        "deploy/grafana/dashboards/teston.json is out of date: run python deploy/grafana/dashboard.py"
    )
    panels = [panel for panel in json.loads(committed)["panels"] if panel["type"] != "row"]
    assert all(panel["targets"] and panel["datasource"]["uid"] == "prometheus" for panel in panels)


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    expressions = dashboard_module().expressions()
    assert len(expressions) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_query_{n}", "expr": e} for n, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(expressions)} rules found" in run(promtool, "check", "rules", path)


def test_every_metric_the_rules_and_the_dashboard_use_is_exported() -> None:
    registry = CollectorRegistry()
    IngestMetrics(registry)
    JobMetrics(registry, (INTRADAY, NIGHTLY))
    BotMetrics(registry)
    SinkMetrics(registry)
    exported = metric_names(registry)
    used = {
        name
        for expr in [*alert_expressions().values(), *dashboard_module().expressions()]
        for name in _METRIC_NAME.findall(expr)
    }
    assert used - exported == set()
    # And every metric is shown somewhere: no family of TestON's goes unwatched.
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exported}
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in used}
    assert families - shown == set()


def test_the_monitoring_profile_mounts_what_deploy_holds() -> None:
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY.parent / source).exists(), source
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == dashboard_module().DATASOURCE["uid"]
