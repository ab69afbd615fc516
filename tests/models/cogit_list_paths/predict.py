"""Cog integration tests coglet_list_path_single_element and coglet_list_path_upload_url: a List[Path]
output of `count` files."""

import os
import tempfile
from typing import List

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(self, count: int = Input(description="Number of images", default=1)) -> List[Path]:
        colors = ["red", "blue", "green", "yellow"]
        outputs = []
        for i in range(count):
            color = colors[i % len(colors)]
            p = os.path.join(tempfile.mkdtemp(), f"{color}.png")
            with open(p, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + color.encode())
            outputs.append(Path(p))
        return outputs
