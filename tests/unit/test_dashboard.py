"""The Grafana dashboard (observability/grafana-dashboard.json) asks only for what the server
exports: every query parses (promtool), names metrics the server registers, and groups by labels
those metrics have."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ivr_server.observability.metrics import Metrics
from tests.conftest import REPO

DASHBOARD = json.loads((REPO / "observability" / "grafana-dashboard.json").read_text())
EXPRS = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
_METRIC = re.compile(r"\bivr_[a-z0-9_]+")
_BY = re.compile(r"\bby \(([^)]*)\)")
_MATCHER = re.compile(r"(ivr_[a-z0-9_]+)\{([^}]*)\}")


def exported() -> dict[str, set[str]]:
    """Sample names the server exports (counters with _total, histograms' _bucket/_sum/_count)
    -> their label names (le for buckets)."""
    metrics = Metrics()
    metrics.tool_latency.labels(tool="t").observe(0.1)  # labelled families show samples once used
    metrics.flow_outcomes.labels(flow="f", version="v", outcome="contained").inc()
    for name, children in (("tool_errors", "code"), ("calls_ended", "end_reason"), ("calls_declined", "reason"),
                           ("rtp_rejected", "reason"), ("ari_events", "type")):  # fmt: skip
        getattr(metrics, name).labels(**{children: "x"}).inc()
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_choice() -> None:
    assert DASHBOARD["uid"] == "ivr-server" and DASHBOARD["schemaVersion"] >= 36
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_every_query_names_exported_metrics_and_their_labels() -> None:
    names = exported()
    wanted = {"ivr_reply_latency_seconds_bucket", "ivr_event_loop_lag_seconds_bucket", "ivr_flow_outcomes_total",
              "ivr_tool_latency_seconds_bucket", "ivr_calls_active", "ivr_asr_streams"}  # fmt: skip
    assert wanted <= {m for e in EXPRS for m in _METRIC.findall(e)}, "the issue's panels are all there"
    for expr in EXPRS:
        used = _METRIC.findall(expr)
        assert used, expr
        for metric in used:
            assert metric in names, f"{metric} is not exported (query: {expr})"
        labels = set().union(*(names[m] for m in used))
        for group in _BY.findall(expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in labels, f"'{label}' is no label of {used} (query: {expr})"
        for metric, matchers in _MATCHER.findall(expr):
            for matcher in matchers.split(","):
                assert matcher.split("=")[0].rstrip("!~").strip() in names[metric], expr


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/bootstrap installs Debian's prometheus package")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(EXPRS)]}]}  # fmt: skip
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(EXPRS)} rules found" in checked.stdout
