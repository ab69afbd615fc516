"""Joins a list of strings (Cog's string_list_input test)."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def run(self, s: list[str] = Input(description="A list of strings to print.")) -> str:
        return "hello " + "|".join(s)
