"""The background process: prints while it gets ready, then answers every ping with a pong."""

import multiprocessing.connection
import multiprocessing.synchronize
import os
import time


def ponger(conn: multiprocessing.connection.Connection, lock: multiprocessing.synchronize.Lock) -> None:
    for i in range(100):
        print(f"Getting ready for some serious ponginggg ({i + 1}%)")
        time.sleep(0.001)
    print("ITS PONGIN TIME")
    while True:
        try:
            ping = conn.recv()
        except EOFError:
            return
        print(f"received {ping} in {os.getpid()}")
        with lock:
            conn.send("pong")
