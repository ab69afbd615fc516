"""What the model prints is model output, not a runtime log: setup, predict and train prints reach the
server's log whatever COG_LOG_LEVEL says (`cog predict` and `cog train` start the model with
COG_LOG_LEVEL=warning and show them), while the runtime's own info logs obey the level. Like coglet, the
server writes its log to stderr (stdout stays empty), JSON by default and text with LOG_FORMAT=console."""

import json

from helpers import assert_succeeded, wait_for


def _events(server):
    return [json.loads(line) for line in server.stderr_text().splitlines() if line.startswith("{")]


def _wait_event(server, pred, what):
    return wait_for(lambda: next((e for e in _events(server) if pred(e)), None), timeout=15, what=what)


def test_setup_and_predict_prints_reach_the_log_at_warning_level(serve):
    server = serve("hello", env={"COG_LOG_LEVEL": "warning"})
    status, body = server.predict({"text": "ann"})
    assert_succeeded(status, body)
    setup = _wait_event(server, lambda e: e.get("message") == "loading", "the setup print in the log")
    assert setup["target"] == "cogvisor::setup" and setup["source"] == "stdout", setup
    line = _wait_event(server, lambda e: e.get("message") == "greeting ann", "the predict print in the log")
    assert line["target"] == "cogvisor::user" and line["prediction_id"] == body["id"], line
    assert line["level"] == "INFO" and line["source"] == "stdout", line
    # The runtime's own info logs obey the level.
    messages = [e.get("message") for e in _events(server)]
    assert "worker spawned" not in messages and "prediction finished" not in messages, messages


def test_fd_level_and_stderr_output_reach_the_log_too(serve):
    server = serve("logs", env={"COG_LOG_LEVEL": "error"})
    status, body = server.predict({"mode": "fail"})
    assert body["status"] == "failed", body
    child = _wait_event(server, lambda e: e.get("message") == "child before failing", "subprocess output")
    assert child["target"] == "cogvisor::user" and child["prediction_id"] == body["id"], child
    _wait_event(server, lambda e: e.get("message") == "before failing", "the print before the failure")
    _wait_event(
        server,
        lambda e: e.get("source") == "stderr" and "Traceback" in e.get("message", ""),
        "the traceback the worker printed",
    )


def test_train_prints_reach_the_log_at_warning_level(serve):
    server = serve("train", env={"COG_LOG_LEVEL": "warning"}, extra_args=("--mode", "train"))
    status, body = server.post_json("/trainings", {"input": {"steps": 2}})
    assert_succeeded(status, body)
    for i in range(2):
        e = _wait_event(server, lambda e, i=i: e.get("message") == f"step {i} rate=0.1", f"train print {i}")
        assert e["target"] == "cogvisor::user", e


def test_console_format_shows_model_output_at_warning_level(serve):
    server = serve("hello", env={"COG_LOG_LEVEL": "warning", "LOG_FORMAT": "console"})
    status, body = server.predict({"text": "bo"})
    assert_succeeded(status, body)

    def lines():
        return server.stderr_text().splitlines()

    setup = wait_for(lambda: [l for l in lines() if "cogvisor::setup" in l and "loading" in l], what="setup line")
    assert " INFO " in setup[0], setup
    wait_for(lambda: [l for l in lines() if "cogvisor::user" in l and "greeting bo" in l], what="predict line")
    assert not [l for l in lines() if "worker spawned" in l], lines()
