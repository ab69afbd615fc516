"""Cog integration test function_predictor: a plain function, no class."""

from cog import Input


def run(prompt: str = Input()) -> str:
    return f"HELLO {prompt.upper()}"
