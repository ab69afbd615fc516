"""The predictor class is defined by exec() of generated source."""

SOURCE = '''
from cog import BasePredictor


class {name}(BasePredictor):
    def predict(self, text: str = "world") -> str:
        return "exec " + text
'''

exec(SOURCE.format(name="Pred" + "ictor"))
