"""Returns file outputs: `count` files, each named `name` (in its own directory, so names repeat) or
`g<i>.txt`, as a generator so they come one by one, in order."""

import os
import tempfile

from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self, count: int = 3, same_name: bool = True, name: str = "out.txt"):
        for i in range(count):
            d = tempfile.mkdtemp()
            path = os.path.join(d, name if same_name else f"g{i}.txt")
            with open(path, "w") as f:
                f.write(f"file {i}")
            yield Path(path)
