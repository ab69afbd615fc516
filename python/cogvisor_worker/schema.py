"""The OpenAPI document of a model, built from its signatures as ``cog build`` writes it.

Used when the model directory has no ``.cog/openapi_schema.json``. ``cog build`` (cog 0.23.1) reads the
predictor's source statically with its Go generator (``pkg/schema`` in replicate/cog) and writes one
document; this module produces the same document from the imported functions. The Go function each
part mirrors is named beside it:

* ``buildOpenAPISpec``: the paths (``/``, ``/health-check``, ``/predictions`` or ``/trainings`` and
  their cancel route), ``info`` (``Cog`` and the CLI's version), the request, response, status and
  validation components;
* ``buildInputSchema``: ``Input`` / ``TrainingInput``, one property per parameter (``x-order``,
  ``title``, the type, ``default``, ``nullable``, ``description``, ``minimum``/``maximum``,
  ``minLength``/``maxLength``, ``pattern``, ``deprecated``, ``x-cog-accept``; choices as an enum
  component named after the parameter, referenced through ``allOf``);
* ``SchemaType.JSONSchema``: ``Output`` / ``TrainingOutput`` (titled ``Output`` in both);
* ``GenerateCombined`` / ``MergeSchemas``: with both ``predict``/``run`` and ``train`` in cog.yaml, one
  document, the predict one with the training paths and components added.

Where the Go generator refuses a signature (``cog build`` fails), this module stays lenient and says
what it can; docs/compatibility.md lists those cases.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import inspect
import io
import math
import pathlib
import sys
import types
import typing
from typing import Any, Callable

import cog
from cog.types import MISSING, FieldInfo

OPENAPI_VERSION = "3.0.2"
# info.version: the version of the cog CLI whose generator wrote the document (pkg/global.Version).
COG_VERSION = "0.23.1"

_ANY: dict[str, Any] = {"type": "object"}  # TypeAny.JSONType(), SchemaAnyType()


class SchemaError(Exception):
    """A parameter or return annotation has no JSON Schema: names the parameter and the type."""


# -- names and numbers as the Go generator writes them ----------------------------------------------


def title(name: str) -> str:
    """``TitleCase``: split on ``_``, upper-case the first byte of each part, join with spaces.

    Empty parts stay (``a__b`` -> ``A  B``, ``_x`` -> `` X``). A part that starts with a non-ASCII
    character comes out as Go writes it: ``strings.ToUpper`` of its first byte alone is U+FFFD, and the
    JSON encoder turns each remaining byte of that character into U+FFFD too."""
    parts = []
    for part in name.split("_"):
        if part:
            first = part[0]
            if first.isascii():
                first = first.upper()
            else:
                first = "\ufffd" * len(first.encode("utf-8"))
            part = first + part[1:]
        parts.append(part)
    return " ".join(parts)


def _number(value: Any) -> Any:
    """A float64 as Go's JSON encoder writes it: a whole number has no fraction (``1.0`` -> ``1``)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def _go_key(value: Any) -> str:
    """A dict default's key, as ``fmt.Sprintf("%v")`` writes a non-string key."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = _number(value)
    return str(value)


def _json_default(value: Any) -> Any:
    """``DefaultValue.ToJSON``: a Python default as JSON."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return _json_default(value.value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, cog.Secret):
        return value.get_secret_value()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {_go_key(k): _json_default(v) for k, v in value.items()}
    raise SchemaError(f"default {value!r} is not JSON")


def _is_literal(value: Any) -> bool:
    """Whether the Go parser reads ``value`` as a default (``parseDefaultValue``: Python literals)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(_is_literal(k) and _is_literal(v) for k, v in value.items())
    return False


# -- annotations --------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is types.UnionType


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` / ``X | None`` -> (X, True); a union of several types and None -> (the union
    without None, True); anything else -> (tp, False)."""
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            if len(args) == 1:
                return args[0], True
            return typing.Union[tuple(args)], True  # type: ignore[return-value]
    return tp, False


def _opaque_inner(tp: Any) -> tuple[Any, bool]:
    """``Annotated[T, Opaque]`` -> (T, True)."""
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        if any(m is cog.Opaque or isinstance(m, cog.Opaque) for m in args[1:]):
            return args[0], True
    return tp, False


def is_file_type(tp: Any) -> bool:
    # Python 3.10 counts generic aliases such as list[Path] as classes; issubclass refuses them.
    if not inspect.isclass(tp) or typing.get_origin(tp) is not None:
        return False
    return issubclass(tp, (pathlib.PurePath, io.IOBase))


def _is_secret(tp: Any) -> bool:
    return inspect.isclass(tp) and typing.get_origin(tp) is None and issubclass(tp, cog.Secret)


def _is_list(tp: Any) -> bool:
    return tp is list or typing.get_origin(tp) is list


def _is_dict(tp: Any) -> bool:
    return tp in (dict, collections.abc.Mapping, collections.abc.MutableMapping) or typing.get_origin(tp) in (
        dict,
        collections.abc.Mapping,
        collections.abc.MutableMapping,
    )


def _primitive(tp: Any) -> dict[str, Any] | None:
    """``PrimitiveType.JSONType`` of a scalar annotation, None when ``tp`` is not one."""
    if tp is bool:
        return {"type": "boolean"}
    if tp is float:
        return {"type": "number"}
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        return {"type": "string"}
    if _is_secret(tp):
        return {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
    if is_file_type(tp):
        return {"type": "string", "format": "uri"}
    if tp is typing.Any or tp is object:
        return dict(_ANY)
    return None


def _lenient(tp: Any, where: str) -> dict[str, Any]:
    """Types the Go generator refuses (``cog build`` fails) but a model can still be served with."""
    if tp is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        values = [_json_default(m.value) for m in tp]
        kinds = {type(v) for v in values}
        out: dict[str, Any] = {"enum": values}
        if kinds == {str}:
            out["type"] = "string"
        elif kinds == {int}:
            out["type"] = "integer"
        elif kinds <= {int, float}:
            out["type"] = "number"
        return out
    if tp is type(None):
        return {"type": "null"}
    raise SchemaError(f"{where}: unsupported type {_type_name(tp)}")


# -- inputs (ResolveFieldType / ResolveInputType, inputTypeJSONSchema) -------------------------------


@dataclasses.dataclass
class _InputType:
    schema: dict[str, Any]
    nullable: bool = False  # Optional / OptionalRepeated / a union with None
    union: bool = False
    enum_type: str = "string"  # the type of a choices enum: the primitive's JSON type
    secret: bool = False  # a bare Secret (Repetition Required)


def _enum_type(schema: dict[str, Any]) -> str:
    t = schema.get("type")
    return t if isinstance(t, str) and t else "string"


def _input_type(tp: Any, where: str) -> _InputType:
    if tp is inspect.Parameter.empty:
        return _InputType({})  # no annotation: any JSON (cog build refuses the parameter)
    inner, opaque = _opaque_inner(tp)
    if opaque:
        # opaqueFieldType: an opaque value is TypeAny; a list of them or an optional one keeps its shape.
        base, nullable = _unwrap_optional(inner)
        if _is_list(base):
            schema = {"type": "array", "items": dict(_ANY)}
            return _InputType(schema, nullable=nullable, enum_type="object")
        return _InputType(dict(_ANY), nullable=nullable, enum_type="object")
    if typing.get_origin(tp) is typing.Annotated:
        return _input_type(typing.get_args(tp)[0], where)
    if _is_union(tp):
        members = typing.get_args(tp)
        rest = [a for a in members if a is not type(None)]
        nullable = len(rest) < len(members)
        if len(rest) == 1:
            got = _input_type(rest[0], where)
            got.nullable = True
            got.secret = False
            return got
        # A union input: anyOf its members, each nullable when the union is.
        variants = []
        for member in rest:
            variant = dict(_input_type(member, where).schema)
            if nullable:
                variant["nullable"] = True
            variants.append(variant)
        return _InputType({"anyOf": variants}, nullable=nullable, union=True, enum_type="object")
    if _is_dict(tp):
        return _InputType(dict(_ANY), enum_type="object")
    if _is_list(tp) or tp in (tuple, set, frozenset) or typing.get_origin(tp) in (
        tuple,
        set,
        frozenset,
        collections.abc.Sequence,
    ):
        args = typing.get_args(tp)
        if not args:
            return _InputType({"type": "array", "items": dict(_ANY)}, enum_type="object")
        item = _input_type(args[0], where)
        return _InputType({"type": "array", "items": item.schema}, enum_type=item.enum_type)
    prim = _primitive(tp)
    if prim is not None:
        return _InputType(prim, enum_type=_enum_type(prim), secret=_is_secret(tp))
    if typing.is_typeddict(tp):
        return _InputType(dict(_ANY), enum_type="object")
    if _is_model_class(tp):  # cog build refuses model classes as inputs
        return _InputType(_object_schema(tp, where, set()), enum_type="object")
    return _InputType(_lenient(tp, where))


# Input() options copied into an input's property when set: (attribute, schema key, Go's conversion).
_INPUT_OPTIONS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("description", "description", lambda v: v),
    ("ge", "minimum", _number),
    ("le", "maximum", _number),
    ("min_length", "minLength", int),
    ("max_length", "maxLength", int),
    ("regex", "pattern", lambda v: v),
)


def resolve_hints(fn: Callable[..., Any]) -> tuple[dict[str, Any], list[str]]:
    """The type hints of ``fn`` and the annotations that could not be resolved (those count as
    unannotated, i.e. any JSON, rather than failing the model: Cog's build-time analysis reads
    source and does not need them to resolve)."""
    func = getattr(fn, "__func__", fn)
    target: Any = func
    if sys.version_info < (3, 11):
        # Python 3.10's get_type_hints makes a parameter whose default is None Optional (3.11 dropped
        # that), and the loader has replaced a required input's Input() default by None: read the
        # annotations from an object without defaults instead.
        target = types.SimpleNamespace(
            __annotations__=dict(getattr(func, "__annotations__", {})),
            __globals__=getattr(func, "__globals__", {}),
        )
    try:
        return typing.get_type_hints(target, include_extras=True), []
    except Exception:  # noqa: BLE001 - resolved one by one below
        pass
    hints: dict[str, Any] = {}
    problems: list[str] = []
    namespace = dict(getattr(func, "__globals__", {}))
    for name, ann in dict(getattr(func, "__annotations__", {})).items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, namespace)  # noqa: S307 - how typing resolves string annotations
            except Exception as e:  # noqa: BLE001
                problems.append(f"{name}: {ann!r} ({type(e).__name__}: {e})")
                continue
        hints[name] = ann
    return hints, problems


def input_fields(fn: Callable[..., Any], fields: dict[str, FieldInfo] | None = None) -> dict[str, FieldInfo]:
    """Each parameter's ``Input(...)``: from ``fields`` (what the loader took out of the signature) or
    from the signature itself (a function the worker does not run, such as train() in predict mode)."""
    out = dict(fields or {})
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return out
    for p in params:
        if isinstance(p.default, FieldInfo):
            out.setdefault(p.name, p.default)
    return out


def input_schema(
    fn: Callable[..., Any],
    fields: dict[str, FieldInfo] | None = None,
    schema_name: str = "Input",
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """``buildInputSchema``: the input component and the enum components of choices, in order."""
    hints = resolve_hints(fn)[0]
    sig = inspect.signature(fn)
    fields = input_fields(fn, fields)
    props: dict[str, Any] = {}
    required: list[str] = []
    enums: list[tuple[str, dict[str, Any]]] = []
    order = 0
    for p in sig.parameters.values():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name == "self" and order == 0:
            continue
        info = fields.get(p.name)
        default = p.default
        if info is not None:
            default = info.default
        elif default is inspect.Parameter.empty:
            default = MISSING
        where = f"input {p.name!r}"
        annotation = hints.get(p.name, inspect.Parameter.empty)
        if p.annotation is inspect.Parameter.empty and default is MISSING and info is None:
            continue  # extractInputs skips a parameter with neither annotation nor default
        it = _input_type(annotation, where)
        prop: dict[str, Any] = {"x-order": order}
        if info is not None and info.choices is not None and len(info.choices) > 0:
            enums.append(
                (
                    p.name,
                    {
                        "title": p.name,
                        "description": "An enumeration.",
                        "enum": [_json_default(c) for c in info.choices],
                        "type": it.enum_type,
                    },
                )
            )
            prop["allOf"] = [{"$ref": f"#/components/schemas/{p.name}"}]
        else:
            prop["title"] = title(p.name)
            prop.update(it.schema)
        # None as the default of a type that is not nullable is no default: the input is required
        # (seed: int = Input(default=None)). A bare Secret is the exception: Input(default=None) makes
        # it an optional credential, nullable with a null default.
        nullable = it.nullable or (it.secret and default is None)
        has_default = default is not MISSING and not (default is None and not nullable)
        if annotation is inspect.Parameter.empty:
            has_default = default is not MISSING  # cog build refuses it; None is as good as any value
        if not has_default and (it.union or not it.nullable):
            required.append(p.name)
        if has_default:
            try:
                prop["default"] = _json_default(default)
            except SchemaError as e:
                raise SchemaError(f"{where}: {e}") from e
        if nullable:
            prop["nullable"] = True
        if info is not None:
            for attr, key, convert in _INPUT_OPTIONS:
                value = getattr(info, attr)
                if value is not None:
                    prop[key] = convert(value)
            if info.deprecated:
                prop["deprecated"] = True
            if info.accept is not None:
                prop["x-cog-accept"] = info.accept
        order += 1
        props[p.name] = prop
    out: dict[str, Any] = {"title": schema_name, "type": "object", "properties": props}
    if required:
        out["required"] = required
    return out, enums


# -- outputs (ResolveSchemaType, SchemaType.jsonSchema) ----------------------------------------------

_ITERATORS = {
    collections.abc.Iterator,
    collections.abc.AsyncIterator,
    # Not in the Go generator (cog build refuses them); served as iterators all the same.
    collections.abc.Generator,
    collections.abc.AsyncGenerator,
    collections.abc.Iterable,
    collections.abc.AsyncIterable,
}


def _is_model_class(tp: Any) -> bool:
    """cog.BaseModel and pydantic models, TypedDicts (the Go parser's model classes), dataclasses."""
    if not inspect.isclass(tp) or typing.get_origin(tp) is not None:
        return False
    if issubclass(tp, cog.BaseModel) or typing.is_typeddict(tp) or dataclasses.is_dataclass(tp):
        return True
    return any(c.__name__ == "BaseModel" and c.__module__.startswith("pydantic") for c in tp.__mro__[1:])


def _model_fields(tp: Any, where: str) -> list[tuple[str, Any, bool, bool | None]]:
    """(name, annotation, has a default, key required) of each field the Go parser sees: the class's
    own annotations (TypedDicts: with their parents'), a default when it is a literal."""
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as e:  # noqa: BLE001
        raise SchemaError(f"{where}: cannot read the fields of {_type_name(tp)}: {e}") from e
    out: list[tuple[str, Any, bool, bool | None]] = []
    if typing.is_typeddict(tp):
        required_keys = getattr(tp, "__required_keys__", frozenset(hints))
        for name, hint in hints.items():
            if typing.get_origin(hint) in _typeddict_qualifiers():
                hint = typing.get_args(hint)[0]
            out.append((name, hint, False, name in required_keys))
        return out
    own = tp.__dict__.get("__annotations__", {})
    pydantic_fields = getattr(tp, "model_fields", None)
    for name in own:
        hint = hints.get(name, inspect.Parameter.empty)
        if isinstance(pydantic_fields, dict) and name in pydantic_fields:
            has_default = not pydantic_fields[name].is_required()
        else:
            has_default = name in tp.__dict__ and _is_literal(tp.__dict__[name])
        out.append((name, hint, has_default, None))
    return out


def _typeddict_qualifiers() -> tuple[Any, ...]:
    return tuple(q for q in (getattr(typing, "Required", None), getattr(typing, "NotRequired", None)) if q is not None)


def _object_schema(tp: Any, where: str, seen: set[Any]) -> dict[str, Any]:
    """A model class as an object: its fields titled, nullable when Optional, required when neither
    Optional nor defaulted (TypedDicts: when the key is required)."""
    if tp in seen:
        return dict(_ANY)  # a cycle: an opaque object
    seen = seen | {tp}
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, hint, has_default, key_required in _model_fields(tp, where):
        base, nullable = _unwrap_optional(hint)
        inner, opaque = _opaque_inner(hint)
        if opaque:
            base, nullable = _unwrap_optional(inner)
            prop = {"type": "array", "items": dict(_ANY)} if _is_list(base) else dict(_ANY)
        else:
            prop = _output_type(base, f"{where}.{name}", seen)
        if nullable:
            prop["nullable"] = True
        prop["title"] = title(name)
        is_required = not nullable if key_required is None else key_required
        if is_required and not has_default:
            required.append(name)
        props[name] = prop
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _output_type(tp: Any, where: str, seen: set[Any]) -> dict[str, Any]:
    if tp is inspect.Parameter.empty:
        return {}
    inner, opaque = _opaque_inner(tp)
    if opaque:
        base, _ = _unwrap_optional(inner)
        return {"type": "array", "items": dict(_ANY)} if _is_list(base) else dict(_ANY)
    if typing.get_origin(tp) is typing.Annotated:
        return _output_type(typing.get_args(tp)[0], where, seen)
    if _is_union(tp):
        # cog build refuses Optional and union outputs; served with the inner type, nullable.
        base, nullable = _unwrap_optional(tp)
        if nullable:
            out = _output_type(base, where, seen)
            out["nullable"] = True
            return out
        return {"anyOf": [_output_type(a, where, seen) for a in typing.get_args(tp)]}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if _is_dict(tp):
        if len(args) == 2:
            return {"type": "object", "additionalProperties": _output_type(args[1], where, seen)}
        return dict(_ANY)
    if _is_list(tp) or tp in (tuple, set, frozenset) or origin in (tuple, set, frozenset, collections.abc.Sequence):
        items = _output_type(args[0], where, seen) if args else dict(_ANY)
        return {"type": "array", "items": items}
    if inspect.isclass(origin) and issubclass(origin, (cog.ConcatenateIterator, cog.AsyncConcatenateIterator)):
        return {
            "type": "array",
            "items": {"type": "string"},
            "x-cog-array-type": "iterator",
            "x-cog-array-display": "concatenate",
        }
    if origin in _ITERATORS:
        items = _output_type(args[0], where, seen) if args else dict(_ANY)
        return {"type": "array", "items": items, "x-cog-array-type": "iterator"}
    prim = _primitive(tp)
    if prim is not None:
        return prim
    if _is_model_class(tp):
        return _object_schema(tp, where, seen)
    return _lenient(tp, where)


def output_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """``SchemaType.JSONSchema``: the output component from the return annotation, titled ``Output``
    (also as ``TrainingOutput``)."""
    func = getattr(fn, "__func__", fn)
    tp = resolve_hints(fn)[0].get("return", inspect.Parameter.empty)
    if tp is inspect.Parameter.empty and (inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)):
        out: dict[str, Any] = {"type": "array", "items": {}, "x-cog-array-type": "iterator"}
    else:
        out = _output_type(tp, "return type", set())
    out["title"] = "Output"
    return out


# -- the document (buildOpenAPISpec, GenerateCombined) -----------------------------------------------


def _empty_response() -> dict[str, Any]:
    return {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}


def _validation_error_response() -> dict[str, Any]:
    return {
        "description": "Validation Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    }


@dataclasses.dataclass(frozen=True)
class _Names:
    endpoint: str
    request: str
    response: str
    cancel: str
    summary: str
    description: str
    operation: str
    cancel_operation: str
    cancel_param: str
    input: str
    output: str


_MODE_NAMES = {
    "predict": _Names(
        "/predictions",
        "PredictionRequest",
        "PredictionResponse",
        "/predictions/{prediction_id}/cancel",
        "Predict",
        "Run a single prediction on the model",
        "predict_predictions_post",
        "cancel_predictions__prediction_id__cancel_post",
        "prediction_id",
        "Input",
        "Output",
    ),
    "train": _Names(
        "/trainings",
        "TrainingRequest",
        "TrainingResponse",
        "/trainings/{training_id}/cancel",
        "Train",
        "Run a single training on the model",
        "train_trainings_post",
        "cancel_trainings__training_id__cancel_post",
        "training_id",
        "TrainingInput",
        "TrainingOutput",
    ),
}


def build(
    fn: Callable[..., Any],
    fields: dict[str, FieldInfo] | None,
    mode: str,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``buildOpenAPISpec``: the document of one function (run/predict for ``predict``, train for
    ``train``). ``warn`` hears what was left imprecise (unresolvable annotations, an unknown return
    type)."""
    _, problems = resolve_hints(fn)
    for problem in problems:
        if warn is not None:
            warn(f"annotation not resolved, treated as any JSON: {problem}")
    names = _MODE_NAMES["train" if mode == "train" else "predict"]
    endpoint, request, response, cancel = names.endpoint, names.request, names.response, names.cancel
    input_key, output_key, cancel_param = names.input, names.output, names.cancel_param
    components: dict[str, Any] = {}
    inputs, enums = input_schema(fn, fields, input_key)
    components[input_key] = inputs
    try:
        components[output_key] = output_schema(fn)
    except SchemaError as e:
        # Outputs are encoded by value at run time; an unknown return annotation only costs the
        # schema its precision (cog build would refuse the model).
        if warn is not None:
            warn(f"{output_key} schema left open: {e}")
        components[output_key] = {"title": "Output"}
    for name, enum_schema in enums:
        components[name] = enum_schema
    input_ref = f"#/components/schemas/{input_key}"
    components[request] = {
        "title": request,
        "type": "object",
        "properties": {"id": {"title": "Id", "type": "string"}, "input": {"$ref": input_ref}},
    }
    date_time = {"type": "string", "format": "date-time"}
    components[response] = {
        "title": response,
        "type": "object",
        "properties": {
            "input": {"$ref": input_ref},
            "output": {"$ref": f"#/components/schemas/{output_key}"},
            "id": {"title": "Id", "type": "string"},
            "version": {"title": "Version", "type": "string"},
            "created_at": {"title": "Created At", **date_time},
            "started_at": {"title": "Started At", **date_time},
            "completed_at": {"title": "Completed At", **date_time},
            "status": {"title": "Status", "type": "string"},
            "error": {"title": "Error", "type": "string"},
            "logs": {"title": "Logs", "type": "string"},
            "metrics": {"title": "Metrics", "type": "object"},
        },
    }
    components["Status"] = {
        "title": "Status",
        "description": "An enumeration.",
        "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
        "type": "string",
    }
    components["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {
            "detail": {"title": "Detail", "type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}
        },
    }
    components["ValidationError"] = {
        "title": "ValidationError",
        "required": ["loc", "msg", "type"],
        "type": "object",
        "properties": {
            "loc": {
                "title": "Location",
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "msg": {"title": "Message", "type": "string"},
            "type": {"title": "Error Type", "type": "string"},
        },
    }
    main: dict[str, Any] = {
        "summary": names.summary,
        "description": names.description,
        "operationId": names.operation,
        "requestBody": {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}}},
        "responses": {
            "200": {
                "description": "Successful Response",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}}},
            },
            "422": _validation_error_response(),
        },
    }
    if mode != "train" and getattr(getattr(fn, "__func__", fn), "__cog_streaming__", False):
        main["x-cog-streaming"] = True
    paths: dict[str, Any] = {
        "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": _empty_response()}}},
        "/health-check": {
            "get": {
                "summary": "Healthcheck",
                "operationId": "healthcheck_health_check_get",
                "responses": {"200": _empty_response()},
            }
        },
        endpoint: {"post": main},
        cancel: {
            "post": {
                "summary": "Cancel",
                "operationId": names.cancel_operation,
                "parameters": [
                    {
                        "required": True,
                        "schema": {"title": title(cancel_param), "type": "string"},
                        "name": cancel_param,
                        "in": "path",
                    }
                ],
                "responses": {"200": _empty_response(), "422": _validation_error_response()},
            }
        },
    }
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Cog", "version": COG_VERSION},
        "paths": paths,
        "components": {"schemas": components},
    }
    _remove_title_next_to_ref(doc)
    _fix_nullable_any_of(doc)
    return doc


def merge(predict: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """``MergeSchemas``: the predict document with the train document's paths and components that it
    does not have already."""
    out = dict(predict)
    paths = dict(predict.get("paths", {}))
    for k, v in train.get("paths", {}).items():
        paths.setdefault(k, v)
    out["paths"] = paths
    schemas = dict(predict.get("components", {}).get("schemas", {}))
    for k, v in train.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(k, v)
    out["components"] = {**predict.get("components", {}), "schemas": schemas}
    return out


def _remove_title_next_to_ref(value: Any) -> None:
    """``removeTitleNextToRef``: OpenAPI 3.0 allows no sibling of ``$ref``."""
    if isinstance(value, dict):
        if "$ref" in value:
            value.pop("title", None)
        for child in value.values():
            _remove_title_next_to_ref(child)
    elif isinstance(value, list):
        for child in value:
            _remove_title_next_to_ref(child)


def _fix_nullable_any_of(value: Any) -> None:
    """``fixNullableAnyOf``: ``anyOf [T, {"type": "null"}]`` becomes T with ``nullable``."""
    if isinstance(value, dict):
        for child in value.values():
            _fix_nullable_any_of(child)
        variants = value.get("anyOf")
        if not isinstance(variants, list) or len(variants) != 2 or not all(isinstance(v, dict) for v in variants):
            return
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) == 1:
            del value["anyOf"]
            value.update(non_null[0])
            value["nullable"] = True
    elif isinstance(value, list):
        for child in value:
            _fix_nullable_any_of(child)
