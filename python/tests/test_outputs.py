"""Cog's output encoding rules (worker side)."""

import dataclasses
import datetime
import enum
import io
import os
from typing import Any

import pytest

import cog
from cogvisor_worker import outputs, protocol


class Color(enum.Enum):
    RED = "red"


class Fake:
    """Looks like a numpy scalar/array to the encoder."""

    def __init__(self, v: Any) -> None:
        self.v = v

    def tolist(self) -> Any:
        return self.v


def test_json_rules() -> None:
    @dataclasses.dataclass
    class DC:
        a: int
        when: datetime.datetime

    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    value = {"t": (1, 2), "s": {3}, "e": Color.RED, "dc": DC(1, when), "np": Fake([1.5]), 5: "key"}
    assert outputs.to_json(value) == {
        "t": [1, 2], "s": [3], "e": "red", "dc": {"a": 1, "when": "2024-01-02T03:04:05"}, "np": [1.5], "5": "key",
    }


def test_pydantic_outputs_when_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class M(pydantic.BaseModel):
        a: int
        b: list[str]

    assert outputs.to_json(M(a=1, b=["x"])) == {"a": 1, "b": ["x"]}


def test_unencodable_value_names_its_type() -> None:
    class Thing:
        pass

    with pytest.raises(TypeError, match=r"^Object of type Thing is not JSON serializable$"):
        outputs.to_json(Thing())
    with pytest.raises(TypeError, match=r"Object of type Thing is not JSON serializable \(at output\['k'\]\[1\]\)"):
        outputs.to_json({"k": [1, Thing()]})
    with pytest.raises(TypeError, match="Out of range float value nan"):
        outputs.to_json(float("nan"))


def test_nested_files_become_data_urls(tmp_path: Any) -> None:
    f = tmp_path / "out.txt"
    f.write_bytes(b"model file")

    class Out(cog.BaseModel):
        file: cog.Path
        text: str

    got = outputs.to_json({"o": Out(cog.Path(f), "hi"), "l": [[cog.Path(f)]], "io": io.BytesIO(b"x")}, files=True)
    assert got == {
        "o": {"file": "data:text/plain;base64,bW9kZWwgZmlsZQ==", "text": "hi"},
        "l": [["data:text/plain;base64,bW9kZWwgZmlsZQ=="]],
        "io": "data:application/octet-stream;base64,eA==",
    }
    assert outputs.to_json([cog.Path(f)]) == [str(f)], "without files=True paths stay paths"


def test_top_level_path_and_file_object_are_file_outputs(tmp_path: Any) -> None:
    out_dir = tmp_path / "outputs"
    src = tmp_path / "img.png"
    src.write_bytes(b"png")
    msg = outputs.output_message(cog.Path(src), str(out_dir), str(tmp_path))
    assert msg["type"] == "file_output" and msg["kind"] == "file" and msg["mime_type"] == "image/png"
    assert os.path.dirname(msg["filename"]) == str(out_dir)
    buf = io.BytesIO(b"bytes")
    buf.name = "result.txt"
    msg = outputs.output_message(buf, str(out_dir), str(tmp_path))
    assert msg["filename"].endswith(".txt") and open(msg["filename"], "rb").read() == b"bytes"
    msg = outputs.output_message(io.BytesIO(b"b"), str(out_dir), str(tmp_path))
    assert msg["filename"].endswith(".bin")


def test_missing_output_file_is_an_error(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        outputs.output_message(cog.Path(tmp_path / "does-not-exist"), str(tmp_path / "o"), str(tmp_path))


def test_plain_values_and_spill(tmp_path: Any) -> None:
    assert outputs.output_message({"a": 1}, str(tmp_path), str(tmp_path)) == protocol.output({"a": 1})
    big = "x" * (protocol.MAX_INLINE_PAYLOAD + 10)
    msg = outputs.output_message(big, str(tmp_path), str(tmp_path))
    assert msg["kind"] == "oversized"


def test_is_stream() -> None:
    def gen() -> Any:
        yield 1

    assert outputs.is_stream([1]) and outputs.is_stream((1,)) and outputs.is_stream(gen())
    assert not outputs.is_stream("s") and not outputs.is_stream({"a": 1}) and not outputs.is_stream(None)
