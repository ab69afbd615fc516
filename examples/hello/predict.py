"""The smallest useful model: greets whoever it is asked to greet."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("loading")

    def predict(self, text: str = Input(description="Who to greet", default="world")) -> str:
        print(f"greeting {text}")
        return f"hello {text}"
