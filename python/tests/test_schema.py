"""The OpenAPI document built from a model's signature, as `cog build` (cog 0.23.1's Go generator)
writes it. Whole documents are pinned by the goldens (test_schema_goldens.py); these tests pin the
rules one by one, with the Go function each comes from."""

import dataclasses
import enum
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Optional, TypedDict

import pytest

import cog
from cog import Input, Path, Secret
from cogvisor_worker import loader, schema


def build(fn: Any, mode: str = "predict") -> dict[str, Any]:
    _, fields = loader._fix_input_defaults(fn)
    return schema.build(fn, fields, mode)


def components(fn: Any, mode: str = "predict") -> dict[str, Any]:
    return build(fn, mode)["components"]["schemas"]


def prop(fn: Any, name: str) -> dict[str, Any]:
    return components(fn)["Input"]["properties"][name]


def test_document_layout() -> None:
    def run(text: str) -> str: ...

    doc = build(run)
    # buildOpenAPISpec: OpenAPI 3.0.2, info.version is the cog CLI's (global.Version), four paths.
    assert doc["openapi"] == "3.0.2" and doc["info"] == {"title": "Cog", "version": "0.23.1"}
    assert list(doc["paths"]) == ["/", "/health-check", "/predictions", "/predictions/{prediction_id}/cancel"]
    assert "x-cog-streaming" not in doc["paths"]["/predictions"]["post"]
    assert set(doc["components"]["schemas"]) == {
        "Input", "Output", "PredictionRequest", "PredictionResponse", "Status", "HTTPValidationError", "ValidationError",
    }
    assert doc["components"]["schemas"]["Input"] == {
        "title": "Input", "type": "object", "required": ["text"],
        "properties": {"text": {"title": "Text", "type": "string", "x-order": 0}},
    }


def test_titles_are_go_title_case() -> None:
    # TitleCase: split on "_", upper-case each part's first byte, join with spaces; empty parts stay.
    assert schema.title("max_tokens") == "Max Tokens"
    assert schema.title("a__b") == "A  B"
    assert schema.title("_private") == " Private"
    assert schema.title("trailing_") == "Trailing "
    assert schema.title("x2y") == "X2y"
    assert schema.title("prediction_id") == "Prediction Id"
    # A non-ASCII first letter: Go upper-cases its first byte alone (U+FFFD), and the JSON encoder
    # replaces the character's other byte too.
    assert schema.title("ñame") == "\ufffd\ufffdame"


def test_scalar_types_titles_and_order() -> None:
    def run(max_tokens: int, temperature: float = 0.7, flag: bool = False, s: str = "x") -> str: ...

    props = components(run)["Input"]["properties"]
    assert props["max_tokens"] == {"title": "Max Tokens", "type": "integer", "x-order": 0}
    assert props["temperature"] == {"title": "Temperature", "type": "number", "default": 0.7, "x-order": 1}
    assert props["flag"] == {"title": "Flag", "type": "boolean", "default": False, "x-order": 2}
    assert props["s"]["x-order"] == 3
    assert components(run)["Input"]["required"] == ["max_tokens"]


def test_whole_floats_are_written_as_go_writes_float64() -> None:
    def run(t: float = Input(default=1.0, ge=0.0, le=2.5), n: list[float] = Input(default=[1.0, 0.5])) -> str: ...

    t, n = prop(run, "t"), prop(run, "n")
    assert (t["default"], t["minimum"], t["maximum"]) == (1, 0, 2.5)
    assert all(type(v) is int for v in (t["default"], t["minimum"])), t
    assert n["default"] == [1, 0.5] and type(n["default"][0]) is int


def test_input_constraints() -> None:
    def run(
        n: int = Input(default=2, ge=1, le=10, description="count"),
        s: str = Input(min_length=1, max_length=5, regex="^a+$", deprecated=True),
        d: str = Input(default="x", deprecated=False),
    ) -> str: ...

    assert prop(run, "n") == {"title": "N", "type": "integer", "default": 2, "description": "count",
                              "minimum": 1, "maximum": 10, "x-order": 0}
    s = prop(run, "s")
    assert (s["minLength"], s["maxLength"], s["pattern"], s["deprecated"]) == (1, 5, "^a+$", True)
    assert "deprecated" not in prop(run, "d")
    assert components(run)["Input"]["required"] == ["s"]


def test_choices_are_an_enum_component_referenced_through_all_of() -> None:
    def run(
        mode: str = Input(default="a", choices=["a", "b"]),
        k: int = Input(choices=[1, 2]),
        opt: Optional[str] = Input(default=None, choices=["x"], description="d"),
    ) -> str: ...

    c = components(run)
    # buildInputSchema: no title beside allOf; the enum is named after the parameter, typed by its
    # annotation's primitive.
    assert c["Input"]["properties"]["mode"] == {
        "allOf": [{"$ref": "#/components/schemas/mode"}], "default": "a", "x-order": 0,
    }
    assert c["mode"] == {"title": "mode", "description": "An enumeration.", "enum": ["a", "b"], "type": "string"}
    assert c["k"] == {"title": "k", "description": "An enumeration.", "enum": [1, 2], "type": "integer"}
    assert c["Input"]["required"] == ["k"]
    assert c["Input"]["properties"]["opt"] == {
        "allOf": [{"$ref": "#/components/schemas/opt"}], "default": None, "nullable": True, "description": "d",
        "x-order": 2,
    }


def test_none_default_on_a_plain_type_is_required_without_default() -> None:
    # TestNoneDefaultOnRequiredTypeIsRequired: seed: int = Input(default=None) means "none given".
    def run(seed: int = Input(default=None), paths: list[Path] = Input(default=None), plain: str = None) -> str: ...  # type: ignore[assignment]

    c = components(run)
    assert c["Input"]["required"] == ["seed", "paths", "plain"]
    assert prop(run, "seed") == {"title": "Seed", "type": "integer", "x-order": 0}
    assert "default" not in prop(run, "paths") and "nullable" not in prop(run, "paths")


def test_secret_with_none_default_is_nullable_and_optional() -> None:
    # TestNoneDefaultOnBareSecretIsOptional / TestBareSecretWithoutDefaultRemainsRequired.
    def run(
        api_key: Secret = Input(default=None, description="key"),
        token: Secret = Input(description="required"),
        many: list[Secret] = Input(default=None),
    ) -> str: ...

    secret = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
    assert prop(run, "api_key") == {"title": "Api Key", **secret, "default": None, "nullable": True,
                                    "description": "key", "x-order": 0}
    assert prop(run, "token") == {"title": "Token", **secret, "description": "required", "x-order": 1}
    assert components(run)["Input"]["required"] == ["token", "many"]


def test_optional_inputs_are_nullable_and_not_required() -> None:
    # TestNoneDefaultOnOptionalTypeEmitsNull: Optional with default None emits "default": null;
    # without any default it is neither required nor defaulted.
    def run(a: Optional[str] = None, b: int | None = Input(default=None), c: Optional[Path] = Input(description="x")) -> str: ...

    cs = components(run)
    assert "required" not in cs["Input"]
    assert prop(run, "a") == {"title": "A", "type": "string", "default": None, "nullable": True, "x-order": 0}
    assert prop(run, "b") == {"title": "B", "type": "integer", "default": None, "nullable": True, "x-order": 1}
    assert prop(run, "c") == {"title": "C", "type": "string", "format": "uri", "nullable": True,
                              "description": "x", "x-order": 2}


def test_union_inputs_are_any_of() -> None:
    # inputTypeJSONSchema: a union is anyOf its members; a nullable one marks each member and itself;
    # a union without a default is required even when nullable.
    def run(v: str | float, w: str | int | None, x: list[int] | list[float] = Input(default=[1])) -> str: ...

    assert prop(run, "v") == {"title": "V", "anyOf": [{"type": "string"}, {"type": "number"}], "x-order": 0}
    assert prop(run, "w") == {
        "title": "W", "anyOf": [{"type": "string", "nullable": True}, {"type": "integer", "nullable": True}],
        "nullable": True, "x-order": 1,
    }
    assert prop(run, "x")["anyOf"] == [{"type": "array", "items": {"type": "integer"}},
                                       {"type": "array", "items": {"type": "number"}}]
    assert components(run)["Input"]["required"] == ["v", "w"]


def test_files_and_secrets() -> None:
    def run(
        image: Path = Input(description="img", accept="image/*"),
        f: cog.File = Input(default=None),
        paths: list[Path] = Input(default=["https://example.com/a.png"]),
        key: Secret = Input(description="api key"),
    ) -> Path: ...

    c = components(run)
    assert prop(run, "image") == {"title": "Image", "type": "string", "format": "uri", "description": "img",
                                  "x-cog-accept": "image/*", "x-order": 0}
    assert prop(run, "f") == {"title": "F", "type": "string", "format": "uri", "x-order": 1}
    assert prop(run, "paths")["items"] == {"type": "string", "format": "uri"}
    key = prop(run, "key")
    assert (key["type"], key["format"], key["x-cog-secret"], key["writeOnly"]) == ("string", "password", True, True)
    assert c["Output"] == {"title": "Output", "type": "string", "format": "uri"}
    assert c["Input"]["required"] == ["image", "f", "key"]


def test_any_dict_and_opaque_inputs_are_objects() -> None:
    # TypeAny.JSONType(): Any, dict (typed or not) and Opaque values are {"type": "object"}.
    def run(
        meta: Annotated[dict, cog.Opaque],
        many: Annotated[list, cog.Opaque],
        anything: Any,
        d: dict[str, Any],
        maybe: Annotated[Optional[dict], cog.Opaque] = None,
    ) -> Any: ...

    assert prop(run, "meta") == {"title": "Meta", "type": "object", "x-order": 0}
    assert prop(run, "many") == {"title": "Many", "type": "array", "items": {"type": "object"}, "x-order": 1}
    assert prop(run, "anything") == {"title": "Anything", "type": "object", "x-order": 2}
    assert prop(run, "d") == {"title": "D", "type": "object", "x-order": 3}
    assert prop(run, "maybe") == {"title": "Maybe", "type": "object", "default": None, "nullable": True, "x-order": 4}
    assert components(run)["Output"] == {"title": "Output", "type": "object"}


def test_unannotated_parameters() -> None:
    # extractInputs skips a parameter with neither annotation nor default (cog build drops it);
    # one with a default but no annotation makes cog build fail, here it is any JSON.
    def run(skipped, loose=None, text: str = "x") -> str: ...  # type: ignore[no-untyped-def]

    props = components(run)["Input"]["properties"]
    assert list(props) == ["loose", "text"]
    assert props["loose"] == {"title": "Loose", "default": None, "x-order": 0}
    assert props["text"]["x-order"] == 1


def test_list_and_dict_inputs() -> None:
    def run(xs: list[int], d: dict[str, Any], plain: list = []) -> dict: ...  # noqa: B006

    assert prop(run, "xs") == {"title": "Xs", "type": "array", "items": {"type": "integer"}, "x-order": 0}
    assert prop(run, "d")["type"] == "object"
    assert prop(run, "plain") == {"title": "Plain", "type": "array", "items": {"type": "object"}, "default": [],
                                  "x-order": 2}
    assert components(run)["Output"] == {"title": "Output", "type": "object"}


def test_dict_inputs_as_cogs_integration_tests_pin_them() -> None:
    # dict_input.txtar, list_dict_input.txtar, typing_dict_input.txtar assert these properties.
    from typing import Dict, List

    def run(data: dict, messages: list[dict], typed: Dict[str, Any], items: List[Dict[str, Any]]) -> str: ...

    c = components(run)["Input"]
    assert c["properties"]["data"] == {"title": "Data", "type": "object", "x-order": 0}
    assert c["properties"]["messages"] == {"x-order": 1, "title": "Messages", "items": {"type": "object"}, "type": "array"}
    assert c["properties"]["typed"] == {"x-order": 2, "title": "Typed", "type": "object"}
    assert c["properties"]["items"] == {"x-order": 3, "title": "Items", "items": {"type": "object"}, "type": "array"}
    assert c["required"] == ["data", "messages", "typed", "items"]


def test_dict_defaults_keys_as_go_prints_them() -> None:
    def run(d: dict = Input(default={"a": 1.0, 2: [True], None: None, False: "x"})) -> str: ...

    assert prop(run, "d")["default"] == {"a": 1, "2": [True], "<nil>": None, "false": "x"}


def test_outputs_iterators_and_lists() -> None:
    def gen() -> Iterator[str]: ...

    async def agen() -> AsyncIterator[int]: ...

    def concat() -> cog.ConcatenateIterator[str]: ...

    def lst() -> list[Path]: ...

    def bare() -> list: ...

    def typed_dict() -> dict[str, list[int]]: ...

    def untyped_gen():  # type: ignore[no-untyped-def]
        yield 1

    assert components(gen)["Output"] == {"title": "Output", "type": "array", "items": {"type": "string"},
                                         "x-cog-array-type": "iterator"}
    assert components(agen)["Output"]["items"] == {"type": "integer"}
    assert components(concat)["Output"] == {"title": "Output", "type": "array", "items": {"type": "string"},
                                            "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"}
    assert components(lst)["Output"] == {"title": "Output", "type": "array",
                                         "items": {"type": "string", "format": "uri"}}
    assert components(bare)["Output"] == {"title": "Output", "type": "array", "items": {"type": "object"}}
    assert components(typed_dict)["Output"] == {
        "title": "Output", "type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}},
    }
    assert components(untyped_gen)["Output"]["type"] == "array"


def test_base_model_outputs_are_objects_of_their_own_fields() -> None:
    # SchemaType.jsonSchema(SchemaObject): properties titled, nullable when Optional, required when
    # neither Optional nor defaulted, no defaults written, no class-name title; nested models inline.
    class Inner(cog.BaseModel):
        x: float

    class Out(cog.BaseModel):
        text: str
        file: Path
        note: Optional[str]
        inner: Inner
        n: int = 1

    def a() -> Out: ...

    assert components(a)["Output"] == {
        "title": "Output", "type": "object",
        "properties": {
            "text": {"title": "Text", "type": "string"},
            "file": {"title": "File", "type": "string", "format": "uri"},
            "note": {"title": "Note", "type": "string", "nullable": True},
            "inner": {"title": "Inner", "type": "object", "properties": {"x": {"title": "X", "type": "number"}},
                      "required": ["x"]},
            "n": {"title": "N", "type": "integer"},
        },
        "required": ["text", "file", "inner"],
    }


def test_model_outputs_typed_dicts_cycles_and_lenient_kinds() -> None:
    class TD(TypedDict, total=False):
        a: int

    def td() -> TD: ...

    assert components(td)["Output"] == {"title": "Output", "type": "object",
                                        "properties": {"a": {"title": "A", "type": "integer"}}}

    @dataclasses.dataclass
    class DC:
        x: float

    class Color(enum.Enum):
        RED = "red"

    def b() -> DC: ...

    def c() -> Color: ...

    assert components(b)["Output"]["properties"]["x"] == {"title": "X", "type": "number"}
    assert components(c)["Output"] == {"title": "Output", "enum": ["red"], "type": "string"}


def test_pydantic_output_when_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class M(pydantic.BaseModel):
        a: int
        b: str = "x"

    def run() -> M: ...

    out = components(run)["Output"]
    assert out == {"title": "Output", "type": "object", "required": ["a"],
                   "properties": {"a": {"title": "A", "type": "integer"}, "b": {"title": "B", "type": "string"}}}


def test_streaming_flag_and_train_mode() -> None:
    @cog.streaming
    def run(x: int) -> str: ...

    assert build(run)["paths"]["/predictions"]["post"]["x-cog-streaming"] is True

    def train(steps: int = 10) -> Path: ...

    doc = build(train, "train")
    c = doc["components"]["schemas"]
    assert "Input" not in c and c["TrainingInput"]["properties"]["steps"]["default"] == 10
    assert c["TrainingInput"]["title"] == "TrainingInput"
    assert c["TrainingOutput"] == {"title": "Output", "type": "string", "format": "uri"}, "titled Output, as Go does"
    assert list(doc["paths"]) == ["/", "/health-check", "/trainings", "/trainings/{training_id}/cancel"]
    post = doc["paths"]["/trainings"]["post"]
    assert (post["summary"], post["operationId"]) == ("Train", "train_trainings_post")
    param = doc["paths"]["/trainings/{training_id}/cancel"]["post"]["parameters"][0]
    assert param["schema"] == {"title": "Training Id", "type": "string"}


def test_merge_keeps_the_predict_side_where_names_meet() -> None:
    # MergeSchemas adds only the train document's paths and components the predict one lacks: a
    # choices enum of the same name is the predict one's.
    def run(mode: str = Input(default="a", choices=["a", "b"])) -> str: ...

    def train(mode: str = Input(default="x", choices=["x", "y"])) -> str: ...

    merged = schema.merge(build(run), build(train, "train"))
    c = merged["components"]["schemas"]
    assert c["mode"]["enum"] == ["a", "b"]
    assert c["TrainingInput"]["properties"]["mode"]["allOf"] == [{"$ref": "#/components/schemas/mode"}]
    assert {"Input", "TrainingInput", "TrainingOutput", "TrainingRequest", "TrainingResponse"} <= set(c)
    assert list(merged["paths"])[-2:] == ["/trainings", "/trainings/{training_id}/cancel"]


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
    assert loader.build_schema(model) is None


def test_unknown_return_type_leaves_the_output_open_with_a_warning() -> None:
    class Tensor:
        pass

    def run(x: int) -> Tensor: ...

    warnings: list[str] = []
    _, fields = loader._fix_input_defaults(run)
    doc = schema.build(run, fields, "predict", warnings.append)
    assert doc["components"]["schemas"]["Output"] == {"title": "Output"}
    assert warnings == ["Output schema left open: return type: unsupported type Tensor"]


def test_unresolvable_annotations_count_as_any_json() -> None:
    ns: dict[str, Any] = {}
    exec(  # noqa: S102 - a function whose annotation names a type that does not exist at run time
        "from cog import Path\ndef run(x: 'Missing', p: 'Path') -> str: ...\n", ns
    )
    run = ns["run"]
    warnings: list[str] = []
    doc = schema.build(run, {}, "predict", warnings.append)
    props = doc["components"]["schemas"]["Input"]["properties"]
    assert props["x"] == {"title": "X", "x-order": 0}
    assert props["p"]["format"] == "uri"
    assert len(warnings) == 1 and "x: 'Missing'" in warnings[0] and "NameError" in warnings[0]
    from cogvisor_worker import inputs

    assert inputs.coercions(run) == {"p": inputs.Coercion("path")}, "the resolvable ones still coerce"
