"""`python -m cog.server.http` with Cog's flags starts cogvisor on the model in the current directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import BIN, MODELS, REPO, Server, free_port, wait_listening


def test_the_cog_launcher_command_serves_the_model(tmp_path, server_tmpdir):
    port = free_port()
    model = MODELS / "chatty"
    env = dict(os.environ)
    env.pop("PORT", None)
    private_tmp = server_tmpdir
    env.update({"COGVISOR_BIN": str(BIN), "PYTHONPATH": str(REPO / "python"), "TMPDIR": str(private_tmp)})
    stderr_path = tmp_path / "launcher.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", "--port", str(port),
             "--threads", "2", "--await-explicit-shutdown", "false", "--unknown-flag"],
            cwd=model,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    server = Server(model_dir=model, port=port, proc=proc, stderr_path=stderr_path)
    try:
        wait_listening(server, timeout=60)
        server.wait_status("READY", timeout=60)
        status, body = server.predict({"lines": 1})
        assert status == 200 and body["status"] == "succeeded", body
        assert body["logs"] == "line 0\n"
        # The launcher exec'd the binary: the process is cogvisor itself, and SIGTERM stops it.
        assert os.readlink(f"/proc/{proc.pid}/exe") == os.path.realpath(BIN)
        assert "ignoring unknown option '--unknown-flag'" in server.stderr_text()
        server.signal(signal.SIGTERM)
        assert server.wait_exit(timeout=60) == 0
    finally:
        server.cleanup()
