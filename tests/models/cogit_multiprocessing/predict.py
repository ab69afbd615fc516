"""setup() starts a multiprocessing.Process that answers a ping through a Pipe and prints; the
prediction returns a file named after the test (Cog's setup_subprocess_multiprocessing test)."""

import multiprocessing
import time

from bg import ponger

from cog import BasePredictor
from cog.types import Path


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("---> starting background process")
        self.parent_conn, self.child_conn = multiprocessing.Pipe()
        self.lock = multiprocessing.Lock()
        self.bg = multiprocessing.Process(target=ponger, args=(self.child_conn, self.lock))
        self.bg.start()
        print(f"---> started background process pid={self.bg.pid}")

    def predict(self, s: str) -> Path:
        if not self.bg.is_alive():
            print("---> background job died")
            raise SystemExit
        self.parent_conn.send("ping")
        pong = self.parent_conn.recv()
        print(f"---> received {pong} from background job pid={self.bg.pid}")
        out = Path(f"cog-test-integration-out.{time.time_ns()}.tmp")
        out.write_text("hello " + s)
        print(f"---> wrote output file {out}")
        return out
