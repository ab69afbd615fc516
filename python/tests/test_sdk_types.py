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


# Each message is coglet 0.23.1's, measured on it (the first rule a name breaks is the one reported).
NAME_ERRORS = [
    ("", "metric name must not be empty"),
    ("predict_time", "'predict_time' is reserved by the runtime"),
    ("cog.system", "the 'cog.' prefix is reserved for system metrics"),
    ("cog.", "the 'cog.' prefix is reserved for system metrics"),
    ("cog." + "a" * 130, "the 'cog.' prefix is reserved for system metrics"),  # reserved before length
    ("cog.a.b.c.d.e", "the 'cog.' prefix is reserved for system metrics"),
    ("a" * 129, "metric name must be 128 characters or fewer (got 129 characters)"),
    ("_" * 129, "metric name must be 128 characters or fewer (got 129 characters)"),
    ("a." * 64 + "b", "metric name must be 128 characters or fewer (got 129 characters)"),
    ("é" * 65, "metric name must be 128 characters or fewer (got 130 characters)"),  # UTF-8 bytes
    ("a.b.c.d.e", "metric name must have at most 4 dot-separated segments (got 5)"),
    (".a.b.c.d.e", "metric name must have at most 4 dot-separated segments (got 6)"),
    ("a..b.c.d.e", "metric name must have at most 4 dot-separated segments (got 6)"),
    ("a.b.c.d._e", "metric name must have at most 4 dot-separated segments (got 5)"),
    (".invalid", "metric name must not start with a dot"),
    (".", "metric name must not start with a dot"),
    ("..", "metric name must not start with a dot"),
    ("invalid.", "metric name must not end with a dot"),
    ("predict_time.", "metric name must not end with a dot"),
    ("foo..bar", "metric name must not contain empty segments (consecutive dots)"),
    ("_invalid", "metric name segment '_invalid' must start with a letter"),
    ("9abc", "metric name segment '9abc' must start with a letter"),
    ("é", "metric name segment 'é' must start with a letter"),
    ("foo.1bar", "metric name segment '1bar' must start with a letter"),
    ("a.-", "metric name segment '-' must start with a letter"),
    ("_cog.x", "metric name segment '_cog' must start with a letter"),
    ("foo__bar", "metric name segment 'foo__bar' must not contain consecutive underscores"),
    ("a__", "metric name segment 'a__' must not contain consecutive underscores"),
    ("a__-b", "metric name segment 'a__-b' must not contain consecutive underscores"),
    ("c__d.a-b", "metric name segment 'c__d' must not contain consecutive underscores"),
    ("a-b", "metric name segment 'a-b' contains invalid character '-'"),
    ("a-__b", "metric name segment 'a-__b' contains invalid character '-'"),
    ("a-_", "metric name segment 'a-_' contains invalid character '-'"),
    ("aé", "metric name segment 'aé' contains invalid character 'é'"),
    ("a.b c", "metric name segment 'b c' contains invalid character ' '"),
    ("invalid_", "metric name segment 'invalid_' must end with a letter or digit"),
    ("a1_", "metric name segment 'a1_' must end with a letter or digit"),
]


@pytest.mark.parametrize(("name", "message"), NAME_ERRORS)
def test_metric_name_rules_word_for_word(name: str, message: str) -> None:
    m, sent = recorder()
    with pytest.raises(ValueError) as err:
        m.record(name, 1)
    assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        m[name] = 1
    assert str(err.value) == message
    assert sent == []


def test_metric_good_names() -> None:
    m, sent = recorder()
    names = ("a", "A", "timing.pre", "a1_b.c2.d.e", "Tokens_per_s", "cog", "Predict_time", "x.predict_time")
    for name in names:
        m.record(name, 1)
    m.record("a" * 128, 1)
    assert [n for n, _, _ in sent] == [*names, "a" * 128]


def test_metric_delete_skips_only_the_reserved_names() -> None:
    m, sent = recorder()
    m.delete("predict_time")
    del m["cog.x"]
    m["cog.y"] = None
    assert sent == [("predict_time", None, "replace"), ("cog.x", None, "replace"), ("cog.y", None, "replace")]
    with pytest.raises(ValueError, match="^metric name segment '_a' must start with a letter$"):
        m.delete("_a")
    with pytest.raises(ValueError, match="^metric name must not be empty$"):
        m.delete("")
    with pytest.raises(ValueError, match="^metric name segment '_a' must start with a letter$"):
        m["_a"] = None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "Unsupported metric value type: NoneType. Expected bool, int, float, str, list, or dict."),
        (object(), "Unsupported metric value type: object. Expected bool, int, float, str, list, or dict."),
        ((1, 2), "Unsupported metric value type: tuple. Expected bool, int, float, str, list, or dict."),
        (b"x", "Unsupported metric value type: bytes. Expected bool, int, float, str, list, or dict."),
        ([1, object()], "Cannot convert object to JSON metric value"),
        ({"a": (1,)}, "Cannot convert tuple to JSON metric value"),
        ({1: 2}, "'int' object cannot be cast as 'str'"),
    ],
)
def test_metric_value_types_word_for_word(value: object, message: str) -> None:
    m, sent = recorder()
    with pytest.raises(TypeError) as err:
        m.record("k", value)
    assert str(err.value) == message and sent == []
    m.record("k", "ok")  # a refused value does not fix the metric's type
    assert sent == [("k", "ok", "replace")]


def test_metric_values_become_json_as_in_coglet() -> None:
    m, sent = recorder()
    m.record("big", 2**70)
    m.record("nan", float("nan"))
    m.record("nested", {"a": [1, {"b": None}], "t": True})
    assert sent == [
        ("big", float(2**70), "replace"), ("nan", None, "replace"),
        ("nested", {"a": [1, {"b": None}], "t": True}, "replace"),
    ]


def test_metric_modes_and_type_changes_word_for_word() -> None:
    m, sent = recorder()
    for mode in ("sum", "REPLACE", ""):
        with pytest.raises(TypeError) as err:
            m.record("a", 1, mode)
        assert str(err.value) == f"Invalid metric mode: '{mode}'. Expected 'replace', 'incr', or 'append'."
    with pytest.raises(TypeError, match=r"^Invalid metric mode: 'bad'\."):
        m.record("_bad", None, "bad")  # the mode is checked first, then the name, then the value
    with pytest.raises(ValueError, match="^metric name segment '_bad' must start with a letter$"):
        m.record("_bad", None)
    with pytest.raises(TypeError, match="^Increment mode requires int or float, got str$"):
        m.record("i", "x", "incr")
    with pytest.raises(TypeError, match="^Increment mode requires int or float, got bool$"):
        m.record("i", True, "increment")
    m.record("a", 1)
    with pytest.raises(TypeError) as err:
        m.record("a", "x")
    assert str(err.value) == "Metric 'a' has type int, cannot set to str without deleting first"
    with pytest.raises(TypeError, match="^Metric 'a' has type int, cannot set to float without deleting first$"):
        m.record("a", 2.5, "incr")
    m.record("s", 1, "append")  # append keeps the type of the item, as in coglet
    with pytest.raises(TypeError, match="^Metric 's' has type int, cannot set to str without deleting first$"):
        m.record("s", "x", "append")
    with pytest.raises(TypeError, match="^Metric 's' has type int, cannot set to list without deleting first$"):
        m.record("s", [2])
    m.delete("a")
    m.record("a", "x")
    assert sent == [("a", 1, "replace"), ("s", 1, "append"), ("a", None, "replace"), ("a", "x", "replace")]


def test_metric_key_and_mode_must_be_strings() -> None:
    m, _ = recorder()
    for scope_metrics in (m, cog.current_scope().metrics):
        with pytest.raises(TypeError, match="^argument 'key': 'int' object cannot be cast as 'str'$"):
            scope_metrics.record(1, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="^argument 'mode': 'int' object cannot be cast as 'str'$"):
            scope_metrics.record("a", 1, 3)  # type: ignore[arg-type]


def test_scope_outside_a_prediction_is_a_no_op() -> None:
    assert _runtime.installed() is None
    scope = cog.current_scope()
    scope.record_metric("anything goes", None)
    scope.record_metric("_bad", object())
    scope.metrics["predict_time"] = 1
    scope.metrics.delete("_bad")
    assert scope.context == {}
    assert repr(scope) == "Scope(MetricRecorder(inactive))"
    with pytest.raises(TypeError, match="^Invalid metric mode: 'sum'"):
        scope.record_metric("a", 1, "sum")  # as in coglet, only the mode is checked
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
