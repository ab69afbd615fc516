"""A plain function as the predictor (Cog's non_base_predictor_function test)."""

from cog import Input


def predict(text: str = Input(default="world")) -> str:
    return f"hello {text}"
