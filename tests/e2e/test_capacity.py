"""With its single slot busy the server answers 409 at once, and the slot is free right after."""

import threading

from helpers import assert_succeeded, wait_for


def test_second_request_while_busy_is_409(serve):
    server = serve("slow")
    first: dict = {}

    def run_first():
        first["result"] = server.predict({"seconds": 3}, timeout=60)

    t = threading.Thread(target=run_first, daemon=True)
    t.start()
    wait_for(lambda: server.health()["status"] == "BUSY", timeout=10, what="BUSY")
    h = server.health()
    assert h["slots"]["busy"] == 1, h

    status, body = server.predict({"seconds": 0})
    assert status == 409, body
    assert body["error"] == "At capacity - all prediction slots busy", body
    assert body["status"] == "failed", body

    t.join(timeout=60)
    assert not t.is_alive(), "first prediction did not finish"
    status, body = first["result"]
    assert_succeeded(status, body)
    assert body["output"] == "done"

    # Released on the terminal message: an immediate follow-up is admitted.
    status, body = server.predict({"seconds": 0})
    assert_succeeded(status, body)
