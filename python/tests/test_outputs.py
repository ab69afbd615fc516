"""Cog's output encoding rules (worker side)."""

import dataclasses
import datetime
import enum
import io
import os
import struct
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


LARGE = outputs.LARGE_STRING


@pytest.mark.parametrize(
    "value",
    [
        "x" * LARGE,  # ASCII, inline
        "é🦀" * LARGE,  # non-ASCII, inline
        "x" * (protocol.MAX_INLINE_PAYLOAD - 2),  # JSON exactly at the inline limit
        "x" * (protocol.MAX_INLINE_PAYLOAD - 1),  # one byte over: spilled
        "x" * (outputs.SPILL_CHUNK * 7 + 3),  # ASCII, spilled in pieces
        "é" * (protocol.MAX_INLINE_PAYLOAD // 2),  # non-ASCII, spilled
        "x" * LARGE + '"',  # escapes: the general path
        "x" * LARGE + "\\",
        "x" * LARGE + "\n",
        "\x1f" + "x" * LARGE,
        "x" * (protocol.MAX_INLINE_PAYLOAD) + "\t",
        "x" * (LARGE - 1),  # small strings: the general path
        {"big": "x" * LARGE},
    ],
    ids=lambda v: f"{type(v).__name__}-{len(v)}",
)
def test_outputs_are_byte_identical_to_their_plain_json(tmp_path: Any, value: Any) -> None:
    msg = outputs.output_message(value, str(tmp_path), str(tmp_path))
    expected = protocol.dumps(value).encode("utf-8")
    if len(expected) > protocol.MAX_INLINE_PAYLOAD:
        assert msg == protocol.file_output(msg["filename"], "oversized")
        assert open(msg["filename"], "rb").read() == expected
    else:
        assert msg == protocol.output(value)
        assert protocol.encode_frame(msg) == struct.pack(">I", len(expected) + 27) + (
            b'{"type":"output","output":' + expected + b"}"
        )
        assert protocol.encode_frame(msg) == protocol.encode_frame(protocol.output(value))


@pytest.mark.parametrize("size", [LARGE, protocol.MAX_INLINE_PAYLOAD])
def test_a_lone_surrogate_fails_as_the_plain_encoding_does(tmp_path: Any, size: int) -> None:
    value = "x" * size + "\ud800"
    with pytest.raises(UnicodeEncodeError) as plain:
        protocol.dumps(value).encode("utf-8")
    with pytest.raises(UnicodeEncodeError) as got:
        outputs.output_message(value, str(tmp_path), str(tmp_path))
    assert str(got.value) == str(plain.value)
    assert os.listdir(tmp_path) == [], "no spill file is left behind"


def test_is_stream() -> None:
    def gen() -> Any:
        yield 1

    assert outputs.is_stream([1]) and outputs.is_stream((1,)) and outputs.is_stream(gen())
    assert not outputs.is_stream("s") and not outputs.is_stream({"a": 1}) and not outputs.is_stream(None)


def _nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def test_outputs_may_nest_up_to_the_depth_limit() -> None:
    assert outputs.MAX_OUTPUT_DEPTH == 100
    assert outputs.to_json(_nested(100)) == _nested(100)
    # objects, dataclasses and lists all count as levels
    value: Any = 1
    for i in range(100):
        value = {"k": value} if i % 2 else [value]
    assert outputs.to_json(value) == value


@pytest.mark.parametrize("kind", ["list", "dict", "dataclass"])
def test_an_output_past_the_depth_limit_fails_naming_the_limit(kind: str) -> None:
    @dataclasses.dataclass
    class Box:
        inner: Any

    value: Any = 1
    for _ in range(101):
        value = {"k": value} if kind == "dict" else Box(value) if kind == "dataclass" else [value]
    with pytest.raises(ValueError, match=r"^output is nested more than 100 levels deep \(at output"):
        outputs.to_json(value)
    with pytest.raises(ValueError, match=r"^output is nested more than 100 levels deep"):
        outputs.output_message(value, "/nonexistent", "/nonexistent")


def test_a_cyclic_output_fails_at_the_depth_limit() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match=r"^output is nested more than 100 levels deep"):
        outputs.to_json(cyclic)
