"""The OpenAPI document built from a model's signature, in Cog's layout."""

import dataclasses
import enum
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Optional

import pytest

import cog
from cog import Input, Path, Secret
from cogvisor_worker import loader, schema


def build(fn: Any, mode: str = "predict") -> dict[str, Any]:
    _, fields = loader._fix_input_defaults(fn)
    return schema.build(fn, fields, mode, "0.1.0")


def components(fn: Any, mode: str = "predict") -> dict[str, Any]:
    return build(fn, mode)["components"]["schemas"]


def prop(fn: Any, name: str) -> dict[str, Any]:
    return components(fn)["Input"]["properties"][name]


def test_document_layout() -> None:
    def run(text: str) -> str: ...

    doc = build(run)
    assert doc["openapi"] == "3.0.2" and doc["info"] == {"title": "Cog", "version": "0.1.0"}
    assert set(doc["paths"]) >= {"/", "/health-check", "/predictions", "/predictions/{prediction_id}/cancel"}
    assert "x-cog-streaming" not in doc["paths"]["/predictions"]["post"]
    names = set(doc["components"]["schemas"])
    assert names >= {"Input", "Output", "PredictionRequest", "PredictionResponse", "Status",
                     "HTTPValidationError", "ValidationError"}
    assert doc["components"]["schemas"]["Input"] == {
        "title": "Input", "type": "object", "required": ["text"],
        "properties": {"text": {"title": "Text", "type": "string", "x-order": 0}},
    }


def test_scalar_types_titles_and_order() -> None:
    def run(max_tokens: int, temperature: float = 0.7, flag: bool = False, s: str = "x") -> str: ...

    props = components(run)["Input"]["properties"]
    assert props["max_tokens"] == {"title": "Max Tokens", "type": "integer", "x-order": 0}
    assert props["temperature"] == {"title": "Temperature", "type": "number", "default": 0.7, "x-order": 1}
    assert props["flag"] == {"title": "Flag", "type": "boolean", "default": False, "x-order": 2}
    assert props["s"]["x-order"] == 3
    assert components(run)["Input"]["required"] == ["max_tokens"]


def test_input_constraints() -> None:
    def run(
        n: int = Input(default=2, ge=1, le=10, description="count"),
        s: str = Input(min_length=1, max_length=5, regex="^a+$", deprecated=True),
    ) -> str: ...

    assert prop(run, "n") == {"title": "N", "type": "integer", "default": 2, "description": "count",
                              "minimum": 1, "maximum": 10, "x-order": 0}
    s = prop(run, "s")
    assert (s["minLength"], s["maxLength"], s["pattern"], s["deprecated"]) == (1, 5, "^a+$", True)
    assert components(run)["Input"]["required"] == ["s"]


def test_choices_are_an_enum_component_referenced_through_all_of() -> None:
    def run(mode: str = Input(default="a", choices=["a", "b"]), k: int = Input(choices=[1, 2])) -> str: ...

    c = components(run)
    assert c["Input"]["properties"]["mode"] == {
        "allOf": [{"$ref": "#/components/schemas/mode"}], "default": "a", "x-order": 0,
    }
    assert c["mode"] == {"title": "mode", "description": "An enumeration.", "enum": ["a", "b"], "type": "string"}
    assert c["k"]["type"] == "integer" and c["k"]["enum"] == [1, 2]


def test_files_and_secrets() -> None:
    def run(
        image: Path = Input(description="img", accept="image/*"),
        f: cog.File = None,
        paths: list[Path] = Input(default=None),
        key: Secret = Input(description="api key"),
    ) -> Path: ...

    c = components(run)
    assert prop(run, "image")["format"] == "uri" and prop(run, "image")["x-cog-accept"] == "image/*"
    assert prop(run, "f")["format"] == "uri"
    assert prop(run, "paths")["items"] == {"type": "string", "format": "uri"}
    key = prop(run, "key")
    assert (key["type"], key["format"], key["x-cog-secret"], key["writeOnly"]) == ("string", "password", True, True)
    assert c["Output"] == {"title": "Output", "type": "string", "format": "uri"}


def test_optional_inputs_are_nullable_and_not_required() -> None:
    def run(a: Optional[str] = None, b: int | None = Input(default=None), c: Optional[Path] = None) -> str: ...

    c = components(run)
    assert "required" not in c["Input"]
    assert prop(run, "a") == {"title": "A", "type": "string", "nullable": True, "x-order": 0}
    assert prop(run, "b")["nullable"] is True and "default" not in prop(run, "b")
    assert prop(run, "c")["format"] == "uri"


def test_opaque_and_untyped_inputs_accept_any_json() -> None:
    def run(meta: Annotated[dict, cog.Opaque], anything=None) -> Any: ...

    assert prop(run, "meta") == {"title": "Meta", "x-order": 0}
    assert prop(run, "anything") == {"title": "Anything", "x-order": 1}
    assert components(run)["Output"] == {"title": "Output"}


def test_list_and_dict_inputs() -> None:
    def run(xs: list[int], d: dict[str, Any], plain: list = []) -> dict: ...  # noqa: B006

    assert prop(run, "xs") == {"title": "Xs", "type": "array", "items": {"type": "integer"}, "x-order": 0}
    assert prop(run, "d")["type"] == "object"
    assert prop(run, "plain")["default"] == []
    assert components(run)["Output"]["type"] == "object"


def test_outputs_iterators_and_lists() -> None:
    def gen() -> Iterator[str]: ...

    async def agen() -> AsyncIterator[int]: ...

    def concat() -> cog.ConcatenateIterator[str]: ...

    def lst() -> list[Path]: ...

    def untyped_gen():  # type: ignore[no-untyped-def]
        yield 1

    assert components(gen)["Output"] == {"title": "Output", "type": "array", "items": {"type": "string"},
                                         "x-cog-array-type": "iterator"}
    assert components(agen)["Output"]["items"] == {"type": "integer"}
    assert components(concat)["Output"]["x-cog-array-display"] == "concatenate"
    assert components(lst)["Output"] == {"title": "Output", "type": "array",
                                         "items": {"type": "string", "format": "uri"}}
    assert components(untyped_gen)["Output"]["type"] == "array"


def test_base_model_dataclass_and_enum_outputs() -> None:
    class Out(cog.BaseModel):
        text: str
        file: Path
        n: int = 1

    @dataclasses.dataclass
    class DC:
        x: float

    class Color(enum.Enum):
        RED = "red"

    def a() -> Out: ...

    def b() -> DC: ...

    def c() -> Color: ...

    out = components(a)["Output"]
    assert out["title"] == "Output" and out["type"] == "object" and out["required"] == ["text", "file"]
    assert out["properties"]["file"] == {"title": "File", "type": "string", "format": "uri"}
    assert out["properties"]["n"]["default"] == 1
    assert components(b)["Output"]["properties"]["x"]["type"] == "number"
    assert components(c)["Output"] == {"title": "Output", "enum": ["red"], "type": "string"}


def test_pydantic_output_when_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class M(pydantic.BaseModel):
        a: int

    def run() -> M: ...

    out = components(run)["Output"]
    assert out["title"] == "Output" and out["properties"]["a"]["type"] == "integer"


def test_streaming_flag_and_train_mode() -> None:
    @cog.streaming
    def run(x: int) -> str: ...

    assert build(run)["paths"]["/predictions"]["post"]["x-cog-streaming"] is True

    def train(steps: int = 10) -> Path: ...

    doc = build(train, "train")
    c = doc["components"]["schemas"]
    assert "Input" not in c and c["TrainingInput"]["properties"]["steps"]["default"] == 10
    assert c["TrainingOutput"]["format"] == "uri" and "/trainings" in doc["paths"]


def test_unsupported_type_names_the_input() -> None:
    class Weird:
        pass

    def run(w: Weird) -> str: ...

    with pytest.raises(schema.SchemaError, match="input 'w': unsupported type Weird"):
        build(run)


def test_var_kwargs_models_have_no_schema(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "predict.py").write_text("class Predictor:\n    def predict(self, **kw):\n        return kw\n")
    monkeypatch.chdir(tmp_path)
    model = loader.load("predict.py:Predictor", "predict")
    assert loader.build_schema(model, "0") is None


def test_unknown_return_type_leaves_the_output_open_with_a_warning() -> None:
    class Tensor:
        pass

    def run(x: int) -> Tensor: ...

    warnings: list[str] = []
    _, fields = loader._fix_input_defaults(run)
    doc = schema.build(run, fields, "predict", "0", warnings.append)
    assert doc["components"]["schemas"]["Output"] == {"title": "Output"}
    assert warnings == ["Output schema left open: return type: unsupported type Tensor"]


def test_unresolvable_annotations_count_as_any_json() -> None:
    ns: dict[str, Any] = {}
    exec(  # noqa: S102 - a function whose annotation names a type that does not exist at run time
        "from cog import Path\ndef run(x: 'Missing', p: 'Path') -> str: ...\n", ns
    )
    run = ns["run"]
    warnings: list[str] = []
    doc = schema.build(run, {}, "predict", "0", warnings.append)
    props = doc["components"]["schemas"]["Input"]["properties"]
    assert props["x"] == {"title": "X", "x-order": 0}
    assert props["p"]["format"] == "uri"
    assert len(warnings) == 1 and "x: 'Missing'" in warnings[0] and "NameError" in warnings[0]
    from cogvisor_worker import inputs

    assert inputs.coercions(run) == {"p": inputs.Coercion("path")}, "the resolvable ones still coerce"
