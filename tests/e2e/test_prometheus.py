"""GET /metrics: parsed with the `prometheus_client` package's parsers (Prometheus text 0.0.4 and the strict
OpenMetrics parser); counters move as predictions run, webhooks are sent, checks fail and the worker is
recycled; gauges follow the health state. Also: every log line about a prediction carries its id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from helpers import wait_for
from receiver import Receiver

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scrape(server, openmetrics: bool = False) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (sample name, sorted labels); the text must parse strictly."""
    headers = {"Accept": OPENMETRICS} if openmetrics else {}
    r = server.request("GET", "/metrics", headers=headers)
    assert r.status == 200, r.body
    text = r.body.decode()
    if openmetrics:
        assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
        families = list(parse_openmetrics(text))
    else:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
        families = list(parse_prometheus(text))
    samples = {}
    for family in families:
        assert family.name.startswith("cogvisor_"), family.name
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not in /metrics: {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def types(server) -> dict[str, str]:
    text = server.request("GET", "/metrics").body.decode()
    return {f.name: f.type for f in parse_prometheus(text)}


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_metrics_parse_and_start_at_zero(serve):
    server = serve("hello")
    for openmetrics in (False, True):
        s = scrape(server, openmetrics)
        assert value(s, "cogvisor_health_state", state="READY") == 1
        assert sum(v for (n, _), v in s.items() if n == "cogvisor_health_state") == 1
        assert value(s, "cogvisor_slots", state="idle") == 1
        assert value(s, "cogvisor_slots", state="busy") == 0
        assert value(s, "cogvisor_slots", state="poisoned") == 0
        for outcome in ("succeeded", "failed", "canceled"):
            assert value(s, "cogvisor_predictions_total", kind="prediction", outcome=outcome) == 0
        assert value(s, "cogvisor_hook_runs_total", hook="after_healthy", outcome="succeeded") == 0
        assert value(s, "cogvisor_webhook_deliveries_total", outcome="delivered") == 0
    t = types(server)
    assert t["cogvisor_predictions"] == "counter"
    assert t["cogvisor_prediction_duration_seconds"] == "histogram"
    assert t["cogvisor_slots"] == "gauge" and t["cogvisor_health_state"] == "gauge"
    assert t["cogvisor_worker_recycle_duration_seconds"] == "histogram"
    assert t["cogvisor_healthcheck_failures"] == "counter"


def test_counters_move_with_predictions_webhooks_checks_and_recycles(serve, tmp_path, receiver):
    health_file = tmp_path / "health"
    server = serve("healthcheck", env={"HEALTH_FILE": str(health_file), "COGVISOR_ADMIN_TOKEN": "tok"})
    for i in range(3):
        status, body = server.predict({"text": "x"}, id=f"metrics-{i}")
        assert status == 200 and body["status"] == "succeeded", body
    s = scrape(server)
    assert value(s, "cogvisor_predictions_total", kind="prediction", outcome="succeeded") == 3
    assert value(s, "cogvisor_prediction_duration_seconds_count", kind="prediction") == 3
    assert value(s, "cogvisor_prediction_duration_seconds_bucket", kind="prediction", le="+Inf") == 3
    assert value(s, "cogvisor_prediction_duration_seconds_sum", kind="prediction") > 0

    # A sync prediction with a webhook: every request the receiver got is counted as delivered.
    status, body = server.predict({"text": "y"}, id="metrics-hooked", webhook=receiver.url + "/hook")
    assert status == 200 and body["status"] == "succeeded", body
    receiver.wait_terminal()
    wait_for(
        lambda: value(scrape(server), "cogvisor_webhook_deliveries_total", outcome="delivered")
        == len(receiver.got("POST")),
        what="webhook deliveries counted",
    )
    assert value(scrape(server), "cogvisor_predictions_total", kind="prediction", outcome="succeeded") == 4

    # A failing health check: duration observed, failure counted, state UNHEALTHY; then healthy again.
    before = value(scrape(server), "cogvisor_healthcheck_duration_seconds_count")
    health_file.write_text("false")
    assert server.health()["status"] == "UNHEALTHY"
    s = scrape(server)
    assert value(s, "cogvisor_healthcheck_failures_total") == 1
    assert value(s, "cogvisor_healthcheck_duration_seconds_count") == before + 1
    assert value(s, "cogvisor_health_state", state="UNHEALTHY") == 1
    assert value(s, "cogvisor_health_state", state="READY") == 0
    health_file.write_text("ok")
    assert server.health()["status"] == "READY"
    assert value(scrape(server), "cogvisor_healthcheck_failures_total") == 1

    # An admin recycle: counted by trigger once the new worker is ready, with its duration.
    assert value(scrape(server), "cogvisor_worker_recycles_total", trigger="admin", outcome="succeeded") == 0
    r = server.request("POST", "/recycle", headers={"Authorization": "Bearer tok"})
    assert r.status == 202, r.body
    wait_for(
        lambda: value(scrape(server), "cogvisor_worker_recycles_total", trigger="admin", outcome="succeeded")
        == 1,
        what="the admin recycle counted",
    )
    s = scrape(server, openmetrics=True)
    assert value(s, "cogvisor_worker_recycle_duration_seconds_count") == 1
    assert value(s, "cogvisor_worker_recycle_duration_seconds_sum") > 0
    assert value(s, "cogvisor_worker_recycles_total", trigger="worker_exit", outcome="succeeded") == 0
    server.wait_status("READY")
    status, body = server.predict({"text": "z"})
    assert status == 200 and body["output"] == "z from generation 2", body
    s = scrape(server)
    assert value(s, "cogvisor_health_state", state="READY") == 1
    # Counters survive the recycle.
    assert value(s, "cogvisor_predictions_total", kind="prediction", outcome="succeeded") == 5


def test_hook_runs_are_counted(serve):
    server = serve("hello", env={"COGVISOR_HOOKS_AFTER_HEALTHY": "true", "COGVISOR_HOOKS_BEFORE_STOP": "false"})
    s = scrape(server)
    assert value(s, "cogvisor_hook_runs_total", hook="after_healthy", outcome="succeeded") == 1
    assert value(s, "cogvisor_hook_runs_total", hook="before_stop", outcome="failed") == 0


def test_failed_and_busy_predictions_show(serve):
    server = serve("failing")
    status, body = server.predict({})
    assert status == 200 and body["status"] == "failed", body
    s = scrape(server)
    assert value(s, "cogvisor_predictions_total", kind="prediction", outcome="failed") == 1
    assert value(s, "cogvisor_predictions_total", kind="prediction", outcome="succeeded") == 0


def test_a_running_prediction_is_a_busy_slot(serve):
    server = serve("cancel")
    r = server.request(
        "POST",
        "/predictions",
        body=json.dumps({"id": "busy-1", "input": {"seconds": 30}}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202, r.body
    def busy():
        s = scrape(server)
        return s if value(s, "cogvisor_slots", state="busy") == 1 else None

    s = wait_for(busy, what="a busy slot")
    assert value(s, "cogvisor_slots", state="idle") == 0
    assert value(s, "cogvisor_health_state", state="BUSY") == 1
    assert server.request("POST", "/predictions/busy-1/cancel").status == 200
    wait_for(
        lambda: value(scrape(server), "cogvisor_predictions_total", kind="prediction", outcome="canceled") == 1,
        what="the cancel counted",
    )
    assert value(scrape(server), "cogvisor_slots", state="idle") == 1


def lines_about(path: Path, prediction_id: str) -> list[dict]:
    """The server's log lines that mention `prediction_id`; each must be a JSON object (the default)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if prediction_id in line:
            out.append(json.loads(line))
    return out


def test_every_log_line_about_a_prediction_carries_its_id(serve, receiver):
    server = serve("failing")
    # A webhook the receiver refuses, so the webhook sender logs about the prediction too.
    receiver.script = lambda req: 400
    status, body = server.predict({}, id="logged-1", webhook=receiver.url + "/hook")
    assert status == 200 and body["status"] == "failed", body
    receiver.wait_terminal()

    def logged() -> list[dict] | None:
        lines = lines_about(server.stderr_path, "logged-1")
        gave_up = any(line.get("message") == "terminal webhook not delivered; giving up" for line in lines)
        return lines if gave_up else None

    lines = wait_for(logged, what="the webhook failure logged")
    assert any(l.get("message") == "prediction finished" for l in lines), lines
    for line in lines:
        assert line.get("prediction_id") == "logged-1", line
    finished = next(l for l in lines if l.get("message") == "prediction finished")
    assert finished["status"] == "failed" and "bad input value" in finished["error"], finished


def test_console_logs_are_human_readable(serve):
    server = serve("hello", env={"LOG_FORMAT": "console"})
    status, body = server.predict({"text": "w"}, id="console-1")
    assert status == 200, body
    line = wait_for(
        lambda: next((l for l in server.stderr_text().splitlines() if "prediction finished" in l), None),
        what="the prediction's log line",
    )
    assert not line.lstrip().startswith("{"), line
    assert "prediction_id=console-1" in line, line
