"""Cog integration test prediction_error_response: predict() raises a ValueError, a RuntimeError or a
plain Exception, chosen by `mode`."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, mode: str) -> str:
        if mode == "value_error":
            raise ValueError("this is a value error")
        if mode == "runtime_error":
            raise RuntimeError("runtime problem")
        if mode == "generic":
            raise Exception("something went wrong")
        return "ok"
