"""The SDK's public surface: types, Input, decorators, scope and metrics rules."""

from __future__ import annotations

import asyncio
import io
import pathlib
import pickle

import pytest

import cog
from cog import _runtime


def test_every_cog_name_is_exported() -> None:
    for name in (
        "BasePredictor", "BaseRunner", "Input", "Path", "File", "Secret", "URLFile", "URLPath",
        "ConcatenateIterator", "AsyncConcatenateIterator", "BaseModel", "Opaque", "current_scope",
        "record_metric", "CancelationException", "streaming", "concurrent", "emit_metric",
        "ExperimentalFeatureWarning", "recycle_worker",
    ):
        assert hasattr(cog, name), name
    assert issubclass(cog.ExperimentalFeatureWarning, Warning)


def test_input_options_and_refusals() -> None:
    f = cog.Input(
        default="a", description="d", ge=1, le=2, min_length=1, max_length=3, regex="^a",
        choices=("a", "b"), deprecated=True, accept="image/*",
    )
    assert (f.min_length, f.max_length, f.regex, f.choices, f.deprecated, f.accept) == (
        1, 3, "^a", ["a", "b"], True, "image/*",
    )
    with pytest.raises(TypeError, match="default_factory"):
        cog.Input(default_factory=list)
    with pytest.raises(TypeError, match="choices"):
        cog.Input(choices="ab")


def test_secret_hides_its_value() -> None:
    s = cog.Secret("hunter2")
    assert str(s) == "**********" and repr(s) == "Secret('**********')"
    assert s.get_secret_value() == "hunter2" and s == cog.Secret("hunter2")
    assert str(cog.Secret()) == "" and cog.Secret().get_secret_value() is None


def test_url_path_names_and_pickles() -> None:
    u = cog.URLPath("https://example.com/a/b%20c.txt?sig=1")
    assert isinstance(u, cog.Path) and isinstance(u, pathlib.PosixPath)
    assert str(u) == "b c.txt" and u.url == "https://example.com/a/b%20c.txt?sig=1"
    again = pickle.loads(pickle.dumps(u))
    assert again.url == u.url
    assert str(cog.URLPath("data:image/png;base64,AAAA")) == "file.png"
    long = cog.types.url_filename("http://h/" + "x" * 300 + ".txt")
    assert len(long.encode()) <= 200 and long.endswith("~.txt")


def test_url_file_is_lazy_and_picklable() -> None:
    f = cog.URLFile("http://127.0.0.1:9/never-opened.bin")
    assert isinstance(f, io.IOBase) and f.name == "never-opened.bin"
    g = pickle.loads(pickle.dumps(f))
    assert g.url == f.url


def test_base_model_becomes_a_dataclass() -> None:
    class Out(cog.BaseModel):
        text: str
        n: int = 1

    assert Out("hi").n == 1 and Out("hi", 2) == Out(text="hi", n=2)

    class Plain(cog.BaseModel, auto_dataclass=False):
        x: int

    with pytest.raises(TypeError):
        Plain(1)  # type: ignore[call-arg]


def test_streaming_and_concurrent_decorators() -> None:
    @cog.streaming
    def a() -> None: ...

    @cog.streaming()
    def b() -> None: ...

    assert a.__cog_streaming__ and b.__cog_streaming__  # type: ignore[attr-defined]

    @cog.concurrent(max=4)
    async def c() -> None: ...

    assert c.__cog_concurrent_max__ == 4  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="needs an async function"):
        cog.concurrent(max=2)(lambda: None)
    with pytest.raises(ValueError, match="integer >= 1, got 0"):
        cog.concurrent(max=0)
    with pytest.raises(ValueError, match="got True"):
        cog.concurrent(max=True)
    assert cog.concurrent(max=1)(lambda: 1).__cog_concurrent_max__ == 1


def test_concatenate_iterators_are_typing_markers() -> None:
    from typing import get_args, get_origin

    hint = cog.ConcatenateIterator[str]
    assert get_origin(hint) is cog.ConcatenateIterator and get_args(hint) == (str,)
    assert get_origin(cog.AsyncConcatenateIterator[str]) is cog.AsyncConcatenateIterator


def test_cancelation_is_a_base_exception() -> None:
    assert issubclass(cog.CancelationException, BaseException)
    assert not issubclass(cog.CancelationException, Exception)


# -- metrics --------------------------------------------------------------------------------------


def recorder() -> tuple[cog.MetricRecorder, list[tuple[str, object, str]]]:
    sent: list[tuple[str, object, str]] = []
    return cog.MetricRecorder(lambda n, v, m: sent.append((n, v, m))), sent


def test_metric_modes_and_item_access() -> None:
    m, sent = recorder()
    m.record("tokens", 1, "incr")
    m.record("tokens", 2, "increment")
    m.record("steps", "a", "append")
    m["score"] = 0.5
    m["score"] = None
    del m["tokens"]
    m.delete("steps")
    assert sent == [
        ("tokens", 1, "increment"), ("tokens", 2, "increment"), ("steps", "a", "append"),
        ("score", 0.5, "replace"), ("score", None, "replace"), ("tokens", None, "replace"),
        ("steps", None, "replace"),
    ]


@pytest.mark.parametrize(
    "name",
    ["", "1abc", "a..b", "_a", "a_", "a__b", "a-b", "a.b.c.d.e", "x" * 129, "predict_time", "cog.x", ".a"],
)
def test_metric_names_follow_cogs_rules(name: str) -> None:
    m, sent = recorder()
    with pytest.raises(ValueError):
        m.record(name, 1)
    assert sent == []


def test_metric_good_names() -> None:
    m, sent = recorder()
    for name in ("a", "timing.pre", "a1_b.c2.d.e", "Tokens_per_s"):
        m.record(name, 1)
    assert len(sent) == 4


def test_metric_value_and_type_rules() -> None:
    m, sent = recorder()
    with pytest.raises(TypeError, match="must not be None"):
        m.record("a", None)
    with pytest.raises(TypeError, match="not one of bool"):
        m.record("a", object())
    with pytest.raises(TypeError, match="Invalid metric mode 'sum'"):
        m.record("a", 1, "sum")
    with pytest.raises(TypeError, match="incr needs an int or float"):
        m.record("a", "x", "incr")
    m.record("a", 1)
    with pytest.raises(TypeError, match="Metric 'a' has type int, cannot set to str without deleting first"):
        m.record("a", "x")
    m.delete("a")
    m.record("a", "x")
    assert sent[-1] == ("a", "x", "replace")


def test_scope_outside_a_prediction_is_a_no_op() -> None:
    assert _runtime.installed() is None
    scope = cog.current_scope()
    scope.record_metric("anything goes", None)
    assert scope.context == {}
    cog.record_metric("x", 1)
    cog.BasePredictor().record_metric("x", 1, mode="incr")


def test_scope_context_is_a_fresh_copy() -> None:
    s = cog.Scope(None, {"a": "1"})
    s.context["a"] = "2"
    assert s.context == {"a": "1"}


def test_emit_metric_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    cog._emit_metric_warned = False  # type: ignore[attr-defined]
    cog.emit_metric("x", 1)
    cog.emit_metric("x", 2)
    assert capsys.readouterr().err.count("deprecated") == 1


def test_standalone_async_scope() -> None:
    async def main() -> dict[str, str]:
        return cog.current_scope().context

    assert asyncio.run(main()) == {}
