"""Children the model starts (even in a new session) do not survive the server's SIGTERM."""

import signal

from helpers import is_alive, read_proc, wait_for


def test_children_of_the_model_are_gone_after_sigterm(serve):
    server = serve("forker")
    status, body = server.predict({})
    assert status == 200 and body["status"] == "succeeded", body
    pids = body["output"]
    assert isinstance(pids, list) and len(pids) == 2, body
    for pid in pids:
        server.track(pid)
        p = read_proc(pid)
        assert p is not None and p.alive and "sleep" in p.cmdline, p

    server.signal(signal.SIGTERM)
    rc = server.wait_exit(timeout=15)
    assert rc == 0, f"exit code {rc}\n{server.stderr_tail()}"
    wait_for(
        lambda: not any(is_alive(pid) for pid in pids),
        timeout=5,
        what=f"the model's children {pids} to be gone",
    )
