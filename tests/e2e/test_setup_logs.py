"""setup.logs in /health-check is built as coglet builds it: one `[<target>] <message>` line per event,
the runtime's start-up milestones in coglet's words around what the model printed, ending with
`Server ready`. Nothing is added after setup: predictions never reach it. A recycle's setup.logs is the
new worker's setup."""

from helpers import assert_succeeded, wait_for


def expected(model_lines, setup=True):
    return [
        "[cogvisor] Creating slot transport",
        "[cogvisor] Spawning worker subprocess",
        "[cogvisor::worker] File descriptor redirection complete",
        "[cogvisor::worker] Connected to slot transport",
        "[cogvisor::worker] Worker starting setup",
        "[cogvisor::worker] Loading predictor",
        *(["[cogvisor::worker] Running setup"] if setup else []),
        *[f"[cogvisor::setup] {line}" for line in model_lines],
        "[cogvisor] Server ready",
    ]


def setup_lines(server):
    logs = server.health()["setup"]["logs"]
    assert logs.endswith("\n"), logs
    lines = logs.splitlines()
    assert lines[0].startswith("[cogvisor] cogvisor "), lines
    return lines[1:]


def test_setup_logs_hold_the_milestones_around_the_model_output(serve):
    server = serve("hello")
    assert setup_lines(server) == expected(["loading"])


def test_predictions_never_reach_setup_logs(serve):
    server = serve("hello")
    before = server.health()["setup"]["logs"]
    for name in ("a", "b"):
        status, body = server.predict({"text": name})
        assert_succeeded(status, body)
        assert body["logs"] == f"greeting {name}\n", body
    assert server.health()["setup"]["logs"] == before


def test_the_milestones_are_there_at_every_log_level(serve):
    server = serve("hello", env={"COG_LOG_LEVEL": "error"})
    assert setup_lines(server) == expected(["loading"])


def test_a_recycle_shows_the_new_workers_setup(serve):
    server = serve("hello", env={"COGVISOR_ADMIN_TOKEN": "t"})
    first = server.health()
    r = server.request("POST", "/recycle", headers={"Authorization": "Bearer t"})
    assert r.status == 202, r.body

    def ready_again():
        h = server.health()
        return h if h["status"] == "READY" and h["worker"]["generation"] == 2 else None

    h = wait_for(ready_again, timeout=60, what="generation 2 READY")
    assert h["setup"]["started_at"] != first["setup"]["started_at"], h
    assert setup_lines(server) == expected(["loading"])


def test_a_failed_setup_keeps_its_output_and_ends_with_the_error(serve):
    server = serve("setup_error", wait="SETUP_FAILED")
    logs = server.health()["setup"]["logs"]
    assert "[cogvisor::worker] Running setup\n" in logs, logs
    assert "[cogvisor::setup] setup_error: about to fail\n" in logs, logs
    assert "[cogvisor] Server ready" not in logs, logs
    assert "boom in setup" in logs.split("[cogvisor::worker] Running setup\n", 1)[1], logs
