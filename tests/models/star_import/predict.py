"""predict.py defines no predictor class itself: the class comes from a star import, as in many published models."""

from impl import *  # noqa: F401,F403
