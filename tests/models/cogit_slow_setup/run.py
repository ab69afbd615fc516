"""Cog Go integration test TestSIGTERMDuringSetup: setup() takes 30 s."""

import time

from cog import BaseRunner


class Runner(BaseRunner):
    def setup(self) -> None:
        time.sleep(30)

    def run(self, s: str) -> str:
        return "hello " + s
