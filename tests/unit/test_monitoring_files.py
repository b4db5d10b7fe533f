"""The Grafana dashboard and Prometheus alerting rules under deploy/monitoring/ refer only
to metrics (and labels) the gateway exports, and promtool accepts the rules where it is
installed (.ci/run installs Debian's `prometheus` package for it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hookgate.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "hookgate-alerts.rules.yml"
DASHBOARD = MONITORING / "hookgate-dashboard.json"

_METRIC = re.compile(r"\b(hookgate_[a-z0-9_]+)")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\b(hookgate_[a-z0-9_]+)\{([^}]*)\}")
# Labels Prometheus adds to every series, and a histogram's bucket bound.
_ALWAYS = {"instance", "job", "le"}


def exported() -> dict[str, set[str]]:
    """Every series name the registry can export, with its label names."""
    names: dict[str, set[str]] = {}
    for collector in list(Metrics().registry._collector_to_names):
        for family in collector.collect():
            labels: set[str] = set()
            describe = getattr(collector, "_labelnames", ())
            labels.update(describe)
            for sample in family.samples:
                labels.update(sample.labels)
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",),
            }.get(family.type, ("",))
            for suffix in suffixes:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def test_every_metric_referenced_exists_with_its_labels() -> None:
    series = exported()
    assert "hookgate_alerts_firing" in series and "hookgate_commit_seconds_bucket" in series
    exprs = expressions()
    assert len(exprs) > 20
    problems = []
    for expr in exprs:
        metrics = set(_METRIC.findall(expr))
        assert metrics or "up{" in expr, expr
        unknown = metrics - series.keys()
        problems += [f"{name} (in {expr!r}) is not exported" for name in sorted(unknown)]
        known = set().union(*(series[m] for m in metrics - unknown)) | _ALWAYS
        for group in _BY.findall(expr):
            for label in filter(None, (part.strip() for part in group.split(","))):
                if label not in known:
                    problems.append(f"label {label!r} (in {expr!r}) is on none of {metrics}")
        for name, matchers in _SELECTOR.findall(expr):
            for label in re.findall(r"([a-z_]+)\s*[=!~]", matchers):
                if name in series and label not in series[name] | _ALWAYS:
                    problems.append(f"{name} has no label {label!r} (in {expr!r})")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_metric_that_does_not_exist() -> None:
    assert "hookgate_no_such_metric_total" not in exported()
    assert _METRIC.findall("rate(hookgate_no_such_metric_total[5m])") == [
        "hookgate_no_such_metric_total"
    ]


def test_the_operators_core_signals_are_on_the_dashboard() -> None:
    text = " ".join(expressions())
    for name in (
        "hookgate_processing_backlog",
        "hookgate_processing_oldest_pending_seconds",
        "hookgate_queued_writes",
        "hookgate_commit_seconds",
        "hookgate_deliveries_total",
        "hookgate_destination_breaker_state",
        "hookgate_rejections_total",
        "hookgate_decisions_total",
        "hookgate_decision_fallbacks_total",
        "hookgate_alerts_firing",
    ):
        assert name in text, name


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "hookgate" and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
