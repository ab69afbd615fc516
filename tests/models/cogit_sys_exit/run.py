"""Calls sys.exit(1) when asked (Cog's predict_sys_exit test)."""

import sys

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, do_exit: bool = False) -> str:
        if do_exit:
            sys.exit(1)
        return "still alive"
