"""The predictor class is put into the module's namespace by globals().update(), under a name built at run time."""

from cog import BasePredictor


class _Model(BasePredictor):
    def predict(self, text: str = "world") -> str:
        return f"globals {text}"


globals().update({"Pred" + "ictor": _Model})
