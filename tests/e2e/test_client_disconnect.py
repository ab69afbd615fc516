"""A client that goes away while its prediction is being admitted must not take the slot with it.

Before the fix, closing the connection right after sending a large sync prediction dropped the request's
handler halfway through handing the prediction to the worker: the slot was taken, the worker never got
the prediction, and every later request was answered 409 ("At capacity") until the server restarted."""

from __future__ import annotations

import json
import socket
import time

from helpers import wait_for


def test_clients_that_disconnect_mid_admission_leave_the_slot_free(serve):
    server = serve("cogit_large_input")
    body = json.dumps({"input": {"padding": "x" * (4 << 20)}}).encode()
    head = (
        f"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    for i in range(40):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head + body)
            # Close at a spread of moments: while the body is read, the input is handed over, or the
            # prediction runs.
            time.sleep(0.001 * (i % 20))
    wait_for(lambda: server.health()["slots"]["busy"] == 0, timeout=60, what="the slot to be free again")
    status, out = server.predict({"padding": "abc"})
    assert status == 200 and out["status"] == "succeeded" and out["output"] == "3", out
