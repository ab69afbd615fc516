"""Leaves two children behind: one in its own session, one plain child. Returns their pids."""

import subprocess

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.children = []  # keep the Popen objects so they are not collected

    def predict(self) -> list[int]:
        detached = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        plain = subprocess.Popen(["sleep", "1000"])
        self.children += [detached, plain]
        return [detached.pid, plain.pid]
