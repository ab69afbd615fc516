"""Webhook memory bounds (issue 15, item 2). Each delivery held its whole prediction and copied the
final payload per attempt, for up to 13 attempts, with no cap on deliveries in flight: 150 predictions
with a 1 MiB input and a receiver that never answers grew the server past 400 MiB in 10 s (1.7 GB in
the issue's longer run). Now a delivery holds only its payload, shared between attempts, and every
payload held counts in one budget (`webhooks.max_in_flight` 64, `webhooks.max_in_flight_bytes`
64 MiB): a non-terminal webhook over half of it is not sent (the next one carries its state), a
terminal one over all of it is dropped, logged and counted as `outcome="dropped"`. The payloads held
count in the retention budget too: finished predictions kept for GET get what they leave."""

from __future__ import annotations

import json
import socket
import threading

from faultlib import RssSampler
from helpers import wait_for

MiB = 1024 * 1024
RSS_LIMIT_KIB = 256 * 1024


class SilentReceiver(threading.Thread):
    """Accepts webhook connections, reads nothing and never answers, until `answer()`: from then on it
    answers every delivery (the held ones are closed, so their retries come back) with 200."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.answering = False

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.answering:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()
            else:
                self.held.append(conn)

    def answer(self) -> None:
        self.answering = True
        held, self.held = self.held, []
        for c in held:
            c.close()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        """Reads one request (headers, then Content-Length bytes of body) and answers 200."""
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    body += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()
        self.join(timeout=10)


def dropped(f) -> int:
    r = f.server.request("GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith('cogvisor_webhook_deliveries_total{outcome="dropped"} '):
            return int(float(line.split()[-1]))
    return 0


def test_webhooks_to_a_receiver_that_never_answers_stay_in_their_budget(start):
    f = start("stream_printer")
    receiver = SilentReceiver()
    receiver.start()
    sampler = RssSampler(f.server.pid)
    sampler.start()
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    text = "x" * MiB
    try:
        for i in range(150):
            r = f.server.request(
                "PUT",
                f"/predictions/w{i}",
                body=json.dumps({"input": {"text": text, "prints": 0}, "webhook": hook}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert r.status == 200, r.body[:300]
            assert json.loads(r.body)["status"] == "succeeded"
        # Past the budget, webhooks are dropped and counted, not held.
        wait_for(lambda: dropped(f) > 0, timeout=30, what="a webhook to be dropped for the budget")
        # Finished predictions and the deliveries' payloads share the retention budget (64 MiB): with
        # the deliveries holding all of it, only the newest finished prediction is kept for GET.
        assert f.server.request("GET", "/predictions/w149").status == 200
        assert f.server.request("GET", "/predictions/w148").status == 404
        # The server still answers at once while every delivery waits on the receiver.
        status, health = f.server.get_json("/health-check", timeout=5)
        assert status == 200 and health["status"] == "READY", health
        peak = sampler.stop()
        assert peak < RSS_LIMIT_KIB, f"server RSS reached {peak} KiB"
        log = f.server.stderr_text()
        assert "terminal webhook dropped: the delivery budget" in log, f.server.stderr_tail()
        # The receiver comes back: the deliveries still retrying go through, and the shutdown that
        # waits for them (up to 30 s, then 10 s) ends as soon as they have.
        receiver.answer()
        f.stop_cleanly(timeout=90)
    finally:
        sampler.stop()
        receiver.close()
