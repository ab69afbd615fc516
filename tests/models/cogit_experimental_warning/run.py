"""Cog integration test experimental_feature_warning: the model imports and filters the deprecated
ExperimentalFeatureWarning."""

import warnings

from cog import BaseRunner, ExperimentalFeatureWarning

warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)


class Runner(BaseRunner):
    def run(self, s: str) -> str:
        return "hello " + s
