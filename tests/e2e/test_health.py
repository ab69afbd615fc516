"""The health engine end to end: the model's healthcheck(), thresholds, the background monitor,
health.command, /readyz and /livez, and that a slow healthcheck never delays predictions."""

from __future__ import annotations

import shutil
import threading
import time

from helpers import EXAMPLES, wait_for


def health_env(tmp_path, mode="ok", **extra):
    f = tmp_path / "health"
    f.write_text(mode)
    env = {"HEALTH_FILE": str(f)}
    env.update(extra)
    return f, env


def test_a_false_healthcheck_is_unhealthy_then_recovers(serve, tmp_path):
    f, env = health_env(tmp_path, "false", COGVISOR_HEALTH_ON_FAILURE="log")
    server = serve("healthcheck", env=env, wait="UNHEALTHY")
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: user-defined healthcheck returned False", h
    r = server.request("GET", "/readyz")
    assert r.status == 503 and r.json() == {"status": "UNHEALTHY", "reason": h["user_healthcheck_error"]}, r.body
    assert server.request("GET", "/livez").status == 200
    # UNHEALTHY still admits predictions, as in Cog.
    status, body = server.predict({"text": "x"})
    assert body["status"] == "succeeded", body
    f.write_text("ok")
    h = server.health()
    assert h["status"] == "READY" and "user_healthcheck_error" not in h, h
    assert server.request("GET", "/readyz").status == 200


def test_a_raising_healthcheck_names_the_exception(serve, tmp_path):
    _, env = health_env(tmp_path, "raise", COGVISOR_HEALTH_ON_FAILURE="log")
    server = serve("healthcheck", env=env, wait="UNHEALTHY")
    h = server.health()
    assert h["user_healthcheck_error"] == "Healthcheck failed: RuntimeError: Critical system error", h


def test_none_is_healthy(serve, tmp_path):
    _, env = health_env(tmp_path, "none")
    server = serve("healthcheck", env=env)
    assert server.health()["status"] == "READY"


def test_a_hanging_healthcheck_times_out_at_the_configured_timeout(serve, tmp_path):
    _, env = health_env(tmp_path, "hang", COGVISOR_HEALTH_TIMEOUT="1s", COGVISOR_HEALTH_ON_FAILURE="log")
    server = serve("healthcheck", env=env, wait="UNHEALTHY")
    started = time.monotonic()
    h = server.health()
    elapsed = time.monotonic() - started
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: user-defined healthcheck timed out after 1.0 seconds", h
    assert elapsed < 10, elapsed


def test_the_liveness_threshold_recycles_the_worker(serve, tmp_path):
    f, env = health_env(tmp_path, "ok")
    server = serve("healthcheck", env=env)
    f.write_text("false")
    assert server.health()["status"] == "UNHEALTHY"
    assert server.health()["status"] == "UNHEALTHY"
    # The third failure in a row reaches the liveness threshold.
    assert server.health()["status"] in ("RECYCLING", "READY")
    f.write_text("ok")  # the replacement is healthy
    h = wait_for(
        lambda: (lambda h: h if h["worker"]["generation"] == 2 and h["status"] == "READY" else None)(server.health()),
        timeout=60,
        what="the liveness recycle to bring generation 2",
    )
    assert h["worker"]["last_recycle"]["trigger"] == "liveness", h


def test_liveness_recycles_share_the_restart_budget_then_defunct(serve, tmp_path):
    # A healthcheck that never passes: each worker is recycled for liveness, with the crash restarts'
    # backoff, until the budget is spent; then DEFUNCT, so the orchestrator replaces the pod.
    _, env = health_env(
        tmp_path,
        "false",
        COGVISOR_HEALTH_PERIOD="1s",
        COGVISOR_HEALTH_TIMEOUT="500ms",
        COGVISOR_HEALTH_LIVENESS_THRESHOLD="1",
        COGVISOR_RECYCLE_RESTART_BUDGET="2 in 300s",
    )
    server = serve("healthcheck", env=env, wait=None)
    h = server.wait_status("DEFUNCT", timeout=90)
    assert h["reason"].startswith("restart budget exhausted: 3 unplanned restarts within 300s; the last: "), h
    assert "user-defined healthcheck returned False" in h["reason"], h
    # Boot plus the two replacements the budget allowed; the third was refused.
    assert h["worker"]["generation"] == 3, h
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "liveness" and last["succeeded"] is False, h
    wait_for(lambda: server.health()["worker"]["pid"] is None, timeout=30, what="the last worker to be stopped")
    r = server.request("GET", "/livez")
    assert r.status == 503 and r.json()["status"] == "DEFUNCT", r.body
    status, body = server.predict({"text": "x"})
    assert status == 503, body


def test_on_failure_exit_makes_the_server_defunct(serve, tmp_path):
    f, env = health_env(
        tmp_path, "ok", COGVISOR_HEALTH_ON_FAILURE="exit", COGVISOR_HEALTH_LIVENESS_THRESHOLD="2"
    )
    server = serve("healthcheck", env=env)
    f.write_text("false")
    server.health()
    server.health()
    server.wait_status("DEFUNCT")
    # The worker is stopped (its whole tree) right after.
    wait_for(lambda: server.health()["worker"]["pid"] is None, timeout=30, what="the worker to be stopped")
    assert server.request("GET", "/livez").status == 503


def test_the_background_monitor_notices_without_polling(serve, tmp_path):
    f, env = health_env(
        tmp_path, "ok", COGVISOR_HEALTH_PERIOD="1s", COGVISOR_HEALTH_TIMEOUT="500ms", COGVISOR_HEALTH_ON_FAILURE="log"
    )
    server = serve("healthcheck", env=env)
    f.write_text("false")
    # /readyz runs no check itself: only the monitor can move it.
    wait_for(lambda: server.request("GET", "/readyz").status == 503, timeout=30, what="/readyz to turn 503")
    f.write_text("ok")
    wait_for(lambda: server.request("GET", "/readyz").status == 200, timeout=30, what="/readyz to turn 200")


def test_health_command_failures_count_as_failed_checks(serve, tmp_path):
    flag = tmp_path / "healthy"
    flag.write_text("")
    server = serve(
        "hello",
        env={
            "COGVISOR_HEALTH_COMMAND": f"test -e {flag}",
            "COGVISOR_HEALTH_ON_FAILURE": "log",
        },
    )
    assert server.health()["status"] == "READY"
    flag.unlink()
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert 'health command "test" exited with code 1' in h["user_healthcheck_error"], h


def test_a_slow_healthcheck_does_not_delay_a_prediction(serve, tmp_path):
    f, env = health_env(tmp_path, "slow")
    server = serve("healthcheck", env=env)
    t = threading.Thread(target=server.health)
    t.start()
    time.sleep(0.3)  # let the 3 s healthcheck start; the assertion below does not depend on this
    started = time.monotonic()
    status, body = server.predict({"text": "fast"})
    elapsed = time.monotonic() - started
    t.join(timeout=30)
    assert body["status"] == "succeeded", body
    assert elapsed < 1.5, f"prediction took {elapsed:.2f}s behind a slow healthcheck"


def test_concurrent_health_checks_share_one_check(serve, tmp_path):
    f, env = health_env(tmp_path, "slow")
    server = serve("healthcheck", env=env)
    results = []
    started = time.monotonic()
    callers = [threading.Thread(target=lambda: results.append(server.health())) for _ in range(3)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(timeout=30)
    elapsed = time.monotonic() - started
    assert len([r for r in results if isinstance(r, dict)]) == 3
    # Three 3 s checks one after another would take 9 s.
    assert elapsed < 7, elapsed


def test_readyz_and_livez_during_start_and_after_setup_failure(serve):
    server = serve("setup_error", wait="SETUP_FAILED")
    r = server.request("GET", "/livez")
    assert r.status == 503 and r.json()["status"] == "SETUP_FAILED", r.body
    assert server.request("GET", "/readyz").status == 503


def test_a_bad_setting_stops_the_server_naming_the_key(serve):
    server = serve("hello", env={"COGVISOR_HEALTH_ON_FAILURE": "explode"}, wait=None, listen=False)
    assert server.wait_exit(timeout=30) == 1
    last = server.stderr_text().strip().splitlines()[-1]
    assert "health.on_failure" in last and "explode" in last and "log, recycle or exit" in last, last


def test_a_bad_cogvisor_yaml_key_stops_the_server(serve, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(EXAMPLES / "hello", model)
    (model / "cogvisor.yaml").write_text("health:\n  perod: 10s\n")
    server = serve(model, wait=None, listen=False)
    assert server.wait_exit(timeout=30) == 1
    last = server.stderr_text().strip().splitlines()[-1]
    assert "health.perod" in last, last
