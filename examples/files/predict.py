"""File inputs (URLs and data URLs, downloaded before the model runs) and file outputs."""

import os
import tempfile
from typing import Optional

from cog import BaseModel, BasePredictor, Input, Path


class Report(BaseModel):
    name: str
    size: int
    copy: Path


class Predictor(BasePredictor):
    def predict(
        self,
        file: Path = Input(description="A file (http(s) or data: URL)"),
        # Optional: `list[Path] = Input(default=None)` would be a required input, as after `cog build`.
        extra: Optional[list[Path]] = Input(description="More files", default=None),
        shape: str = Input(default="file", choices=["file", "list", "nested", "where"]),
    ) -> object:
        print(f"got {file.name} ({os.path.getsize(file)} bytes)")
        out_dir = tempfile.mkdtemp()
        out = Path(out_dir) / "upper.txt"
        out.write_bytes(file.read_bytes().upper())
        if shape == "file":
            return out
        if shape == "list":
            return [out] + [Path(p) for p in (extra or [])]
        if shape == "where":
            return {"input": str(file), "extra": [str(p) for p in extra or []]}
        return Report(name="upper", size=os.path.getsize(out), copy=out)
