"""For bench/recycle_plot.py: a model whose setup takes a while (it stands for loading weights:
LOADER_SETUP_SECONDS, 1.0 by default) and whose prediction takes 20 ms."""

import os
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        time.sleep(float(os.environ.get("LOADER_SETUP_SECONDS", "1.0")))

    def predict(self, text: str = Input(default="x")) -> str:
        time.sleep(0.02)
        return text
