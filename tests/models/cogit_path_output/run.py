"""Returns a BMP image written to a temporary directory (Cog's path_output and predict_output_file tests)."""

import struct
import tempfile

from cog import BaseRunner, Path


def red_bmp(width: int, height: int) -> bytes:
    row = b"\x00\x00\xff" * width
    row += b"\x00" * ((4 - len(row) % 4) % 4)
    pixels = row * height
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


class Runner(BaseRunner):
    def run(self) -> Path:
        out = Path(tempfile.mkdtemp()) / "prediction.bmp"
        out.write_bytes(red_bmp(255, 255))
        return out
