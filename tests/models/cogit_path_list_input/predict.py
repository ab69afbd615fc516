"""Concatenates a list of files (Cog's path_list_input test)."""

from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self, paths: list[Path]) -> str:
        return "".join(p.read_text() for p in paths)
