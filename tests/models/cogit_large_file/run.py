"""Cog integration test coglet_large_file_upload_serial: a 50 MiB binary Path output."""

import os
import tempfile

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def run(self) -> Path:
        p = os.path.join(tempfile.mkdtemp(), "large_output.bin")
        chunk = b"\xde\xad\xbe\xef" * 256  # 1 KiB
        with open(p, "wb") as f:
            for _ in range(50 * 1024):
                f.write(chunk)
        return Path(p)
