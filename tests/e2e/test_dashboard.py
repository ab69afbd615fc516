"""deploy/grafana/cogvisor.json and deploy/prometheus/alerts.yaml query only what the server exports.

Every PromQL expression of the dashboard (panels, annotations, variables) and of the alerting rules is
parsed with a real PromQL parser (`promql-parser`); every series selector in it must name a series of a
real server's `GET /metrics` (examples/hello), and every label matcher must match label values that
series has (all label combinations exist from the start, docs/metrics.md). Labels Prometheus adds when it
scrapes (`instance`, `job`, `pod`, `namespace`) are not the server's and are not checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

from helpers import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "cogvisor.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
TARGET_LABELS = {"instance", "job", "pod", "namespace"}
# Grafana's own range variables, replaced by a duration before parsing.
GRAFANA_RANGES = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}")


def _dashboard_exprs(dash: dict[str, Any]) -> Iterator[tuple[str, str]]:
    def panels(ps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash["panels"]):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r} {t['refId']}", t["expr"]
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            yield f"annotation {a['name']!r}", a["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
            assert m, f"variable {v['name']}: not a label_values() query: {query}"
            yield f"variable {v['name']!r}", m.group(1)


def _alert_exprs(rules: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')!r}", rule["expr"]


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    parsed = promql_parser.parse(GRAFANA_RANGES.sub("5m", expr))
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(parsed, visit)
    return found


def _literal_alternatives(regex: str) -> list[str] | None:
    """`a|b|c` of plain values (what the files use), else None."""
    parts = regex.split("|")
    return parts if all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in parts) else None


def _problems(where: str, expr: str, series: dict[str, list[dict[str, str]]]) -> list[str]:
    problems = []
    try:
        selectors = _selectors(expr)
    except ValueError as e:
        return [f"{where}: not valid PromQL ({e}): {expr}"]
    if not selectors:
        problems.append(f"{where}: selects no series: {expr}")
    for s in selectors:
        if not s.name:
            problems.append(f"{where}: a selector without a metric name: {expr}")
            continue
        if s.name not in series:
            problems.append(f"{where}: {s.name} is not in /metrics")
            continue
        labelsets = series[s.name]
        for m in s.matchers.matchers:
            if m.name in TARGET_LABELS:
                continue
            values = {ls[m.name] for ls in labelsets if m.name in ls}
            if not values:
                problems.append(f"{where}: {s.name} has no label {m.name!r}")
                continue
            op = str(m.op)
            if op.endswith(".Equal") and m.value not in values:
                problems.append(f"{where}: {s.name}{{{m.name}={m.value!r}}} matches nothing; values: {sorted(values)}")
            elif op.endswith(".Re"):
                alternatives = _literal_alternatives(m.value)
                wanted = alternatives if alternatives is not None else [m.value]
                for alt in wanted:
                    if not any(re.fullmatch(alt, v) for v in values):
                        problems.append(f"{where}: {s.name}{{{m.name}=~...{alt!r}...}} matches nothing; "
                                        f"values: {sorted(values)}")
    return problems


def _exported(server) -> tuple[dict[str, list[dict[str, str]]], dict[str, str]]:
    r = server.request("GET", "/metrics")
    assert r.status == 200, r.body
    series: dict[str, list[dict[str, str]]] = {}
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(r.body.decode()):
        families[family.name] = family.type
        for sample in family.samples:
            series.setdefault(sample.name, []).append(dict(sample.labels))
    return series, families


def test_every_query_of_the_dashboard_and_the_alerts_uses_exported_series(serve):
    # Two workers, so the per-worker families of a pool have series too.
    series, families = _exported(serve("hello", env={"COGVISOR_WORKERS_COUNT": "2"}))
    dash = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(ALERTS.read_text())
    exprs = list(_dashboard_exprs(dash)) + list(_alert_exprs(rules))
    assert len(exprs) > 20, exprs
    problems = [p for where, expr in exprs for p in _problems(where, expr, series)]
    assert problems == [], "\n".join(problems)

    # The dashboard shows every metric the server has.
    used = {s.name for _, expr in _dashboard_exprs(dash) for s in _selectors(expr)}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert shown == set(families), f"not on the dashboard: {sorted(set(families) - shown)}"


def test_the_checker_catches_a_misspelt_metric_or_label_value(serve):
    series, _ = _exported(serve("hello"))
    assert _problems("x", 'sum(rate(cogvisor_prediction_total[5m]))', series)
    assert _problems("x", 'cogvisor_health_state{state="DEFUNT"} == 1', series)
    assert _problems("x", 'cogvisor_worker_recycles_total{trigger=~"worker_exit|crash"}', series)
    assert _problems("x", 'cogvisor_slots{status="busy"}', series)
    assert _problems("x", 'sum(rate(cogvisor_predictions_total[5m])', series)
    assert _problems("x", 'histogram_quantile(0.9, rate(cogvisor_prediction_duration_seconds_bucket[$__rate_interval]))',
                     series) == []


def test_the_alerts_cover_defunct_recycle_storms_poisoned_slots_and_webhooks():
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for name in ("CogvisorDefunct", "CogvisorRecycleStorm", "CogvisorPoisonedSlots", "CogvisorWebhookFailures"):
        assert name in alerts, sorted(alerts)
        assert alerts[name]["labels"]["severity"] in ("critical", "warning")
        assert alerts[name]["annotations"]["summary"]
    for r in alerts.values():
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), r


def test_the_dashboard_is_importable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= names
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            for t in p["targets"]:
                assert "$instance" in t["expr"], (p["title"], t["expr"])


def test_the_files_are_documented():
    text = (REPO / "docs" / "metrics.md").read_text()
    for f in (DASHBOARD, ALERTS):
        assert str(f.relative_to(REPO)) in text, f
    assert Path(DASHBOARD).exists() and Path(ALERTS).exists()
