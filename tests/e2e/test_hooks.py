"""Lifecycle hooks: after_healthy holds READY and sees its variables; before_stop runs before every
stop with the reason; a hanging hook is killed with its children; `fail` makes a failed start."""

from __future__ import annotations

import json
import shlex
import signal

from helpers import is_alive, wait_for


def sh(script: str) -> str:
    """A hook command line running `script` in sh (the hook itself runs no shell)."""
    return "sh -c " + shlex.quote(script)


def test_after_healthy_holds_ready_and_sees_its_environment(serve, tmp_path):
    env_file = tmp_path / "env"
    done = tmp_path / "done"
    hook = sh(f"sleep 1.5; env | grep ^COGVISOR_ | sort > {env_file}; echo ${{COGVISOR_GENERATION}} > {done}")
    server = serve("hello", env={"COGVISOR_HOOKS_AFTER_HEALTHY": hook}, wait=None)
    # READY never shows before the hook has finished.
    def ready():
        r = server.request("GET", "/readyz")
        if r.status == 200:
            assert done.exists(), "READY before after_healthy ended"
            return True
        assert r.json()["status"] == "STARTING", r.body
        return False

    wait_for(ready, timeout=60, what="/readyz 200")
    h = server.health()
    lines = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert lines["COGVISOR_PORT"] == str(server.port), lines
    assert lines["COGVISOR_GENERATION"] == "1", lines
    assert lines["COGVISOR_WORKER_PID"] == str(h["worker"]["pid"]), (lines, h)
    assert done.read_text().strip() == "1"  # the ${...} macro in an argument


def test_before_stop_runs_before_a_recycle_and_before_shutdown(serve, tmp_path):
    log = tmp_path / "stops"
    hook = sh(
        f'if kill -0 "$COGVISOR_WORKER_PID"; then alive=alive; else alive=gone; fi; '
        f'echo "$COGVISOR_REASON|$COGVISOR_GENERATION|$alive" >> {log}'
    )
    server = serve(
        "recycler",
        env={"COGVISOR_HOOKS_BEFORE_STOP": hook, "COGVISOR_ADMIN_TOKEN": "t"},
    )
    r = server.request(
        "POST",
        "/recycle",
        body=b'{"reason": "rotate"}',
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )
    assert r.status == 202, r.body
    wait_for(
        lambda: server.health()["worker"]["generation"] == 2 and server.health()["status"] == "READY",
        timeout=60,
        what="generation 2",
    )
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=60) == 0
    assert log.read_text().splitlines() == ["rotate|1|alive", "shutdown|2|alive"]


def test_with_overlap_the_replaced_worker_runs_before_stop_naming_its_successor(serve, tmp_path):
    log = tmp_path / "stops"
    after = tmp_path / "starts"
    server = serve(
        "recycler",
        env={
            "COGVISOR_HOOKS_BEFORE_STOP": sh(f'echo "$COGVISOR_REASON|$COGVISOR_GENERATION" >> {log}'),
            "COGVISOR_HOOKS_AFTER_HEALTHY": sh(f'echo "$COGVISOR_REASON|$COGVISOR_GENERATION" >> {after}'),
            "COGVISOR_ADMIN_TOKEN": "t",
            "COGVISOR_RECYCLE_OVERLAP": "true",
        },
    )
    r = server.request("POST", "/recycle", body=b'{"reason": "rotate"}', headers={"Authorization": "Bearer t"})
    assert r.status == 202, r.body
    wait_for(lambda: log.exists() and log.read_text().strip(), timeout=60, what="the old worker's before_stop")
    assert log.read_text().splitlines() == ["replaced by generation 2|1"]
    # The successor's after_healthy ran before it took the old worker's place.
    assert after.read_text().splitlines() == ["start|1", "rotate|2"]
    assert server.health()["worker"]["generation"] == 2


def test_a_recycle_reason_with_shell_syntax_reaches_a_shell_hook_as_data(serve, tmp_path):
    """The reason comes from the /recycle body (or model code): it reaches a hook only through its
    environment, never spliced into the arguments a `sh -c` hook parses."""
    pwned = tmp_path / "PWNED"
    reasons = tmp_path / "reasons"
    reason = f"x'; touch {pwned}; '"
    # Both forms only read the variable: the careless one (the variable inside single quotes, as an
    # argument macro would have filled it) and the documented one (quoted shell expansion).
    hook = sh(f"echo '${{COGVISOR_REASON}}' >/dev/null; printf '%s\\n' \"$COGVISOR_REASON\" >> {reasons}")
    server = serve(
        "recycler",
        env={"COGVISOR_HOOKS_BEFORE_STOP": hook, "COGVISOR_ADMIN_TOKEN": "t"},
    )
    r = server.request(
        "POST",
        "/recycle",
        body=json.dumps({"reason": reason}).encode(),
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )
    assert r.status == 202, r.body
    wait_for(
        lambda: server.health()["worker"]["generation"] == 2 and server.health()["status"] == "READY",
        timeout=60,
        what="generation 2",
    )
    assert reasons.read_text().splitlines() == [reason]
    assert not pwned.exists(), "the recycle reason ran as shell code in the hook"


def test_a_hanging_hook_is_killed_at_its_timeout_with_its_children(serve, tmp_path):
    child_pid = tmp_path / "child.pid"
    hook = sh(f"sleep 1000 & echo $! > {child_pid}; wait")
    server = serve(
        "hello",
        env={"COGVISOR_HOOKS_AFTER_HEALTHY": hook, "COGVISOR_HOOKS_TIMEOUT": "1s"},
        timeout=60,
    )
    child = int(child_pid.read_text())
    server.track(child)
    wait_for(lambda: not is_alive(child), timeout=30, what=f"the hook's child {child} to be gone")
    assert "timed out after 1.0s" in server.stderr_text()


def test_a_failing_after_healthy_with_fail_policy_is_a_failed_start(serve):
    server = serve(
        "hello",
        env={"COGVISOR_HOOKS_AFTER_HEALTHY": "sh -c 'exit 4'", "COGVISOR_HOOKS_ON_FAILURE": "fail"},
        wait="SETUP_FAILED",
    )
    h = server.health()
    assert "hooks.after_healthy failed: exited with code 4" in h["setup"]["logs"], h
    assert server.request("GET", "/livez").status == 503


def test_a_failing_after_healthy_only_warns_by_default(serve):
    server = serve("hello", env={"COGVISOR_HOOKS_AFTER_HEALTHY": "sh -c 'echo from-the-hook; exit 4'"})
    assert server.health()["status"] == "READY"
    text = server.stderr_text()
    assert "from-the-hook" in text and "exited with code 4" in text


def test_cogvisor_config_prints_values_and_sources(tmp_path):
    import os
    import shutil
    import subprocess

    from helpers import BIN, EXAMPLES

    model = tmp_path / "model"
    shutil.copytree(EXAMPLES / "hello", model)
    (model / "cogvisor.yaml").write_text("health:\n  timeout: 2s\nrecycle:\n  drain_timeout: 10s\n")
    env = dict(os.environ, COGVISOR_RECYCLE_DRAIN_TIMEOUT="20s")
    out = subprocess.run(
        [str(BIN), "config", str(model), "--cancel-grace", "1s"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "2s" in rows["health.timeout"] and "cogvisor.yaml" in rows["health.timeout"], out
    assert "20s" in rows["recycle.drain_timeout"] and "COGVISOR_RECYCLE_DRAIN_TIMEOUT" in rows["recycle.drain_timeout"], out
    assert "1s" in rows["cancel_grace"] and "# flag" in rows["cancel_grace"], out
    assert "recycle" in rows["health.on_failure"] and "# default" in rows["health.on_failure"], out
