"""Records the metric named by `name` (value 1), or runs one of the value/mode/type cases: each broken
rule fails the prediction with coglet's message."""

from cog import BasePredictor, current_scope


class Predictor(BasePredictor):
    def predict(self, name: str = "valid_name", case: str = "") -> str:
        scope = current_scope()
        if case == "type_change":
            scope.record_metric("count", 1)
            scope.record_metric("count", "one")
        elif case == "incr_str":
            scope.record_metric("count", "one", "incr")
        elif case == "bad_mode":
            scope.record_metric("count", 1, "sum")
        elif case == "bad_value":
            scope.record_metric("count", (1, 2))
        elif case == "none_value":
            scope.record_metric("count", None)
        else:
            scope.record_metric(name, 1)
        return "ok"
