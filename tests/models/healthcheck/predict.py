"""A healthcheck driven by a file: its content (ok | false | raise | hang | slow | none) picks the result.

The file is $HEALTH_FILE; missing means ok.
"""

import os
import time

from cog import BasePredictor, Input


def _mode() -> str:
    try:
        with open(os.environ["HEALTH_FILE"]) as f:
            return f.read().strip() or "ok"
    except (KeyError, FileNotFoundError):
        return "ok"


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.generation = int(os.environ.get("COGVISOR_GENERATION", "0"))

    def healthcheck(self):
        mode = _mode()
        if mode == "false":
            return False
        if mode == "raise":
            raise RuntimeError("Critical system error")
        if mode == "hang":
            time.sleep(3600)
        if mode == "slow":
            time.sleep(3)
        if mode == "none":
            return None
        return True

    def predict(self, text: str = Input(default="hi")) -> str:
        return f"{text} from generation {self.generation}"
