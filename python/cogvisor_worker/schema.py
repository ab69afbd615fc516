"""The OpenAPI document of a model, built from its run/predict/train signature in Cog's layout.

Used when the model directory has no ``.cog/openapi_schema.json`` (which ``cog build`` writes). The
layout follows what Cog generates: ``components.schemas.Input`` (or ``TrainingInput``) with one property
per parameter (``title``, ``x-order``, ``default``, ``nullable``, constraints, ``format: uri`` for files,
``format: password`` + ``x-cog-secret`` for secrets, choices as an enum schema referenced through
``allOf``), ``Output`` (or ``TrainingOutput``), the request/response components, and
``paths./predictions.post.x-cog-streaming`` for ``@cog.streaming``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import inspect
import io
import pathlib
import sys
import types
import typing
from typing import Any, Callable

import cog
from cog.types import MISSING, FieldInfo

OPENAPI_VERSION = "3.0.2"


class SchemaError(Exception):
    """A parameter or return annotation has no JSON Schema: names the parameter and the type."""


def title(name: str) -> str:
    """Cog's property titles: ``max_tokens`` -> ``Max Tokens``."""
    return " ".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` / ``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            if len(args) == 1:
                return args[0], True
            return typing.Union[tuple(args)], True  # type: ignore[return-value]
    return tp, False


def _is_opaque(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Annotated and any(
        m is cog.Opaque or isinstance(m, cog.Opaque) for m in typing.get_args(tp)[1:]
    )


def is_file_type(tp: Any) -> bool:
    # Python 3.10 counts generic aliases such as list[Path] as classes; issubclass refuses them.
    if not inspect.isclass(tp) or typing.get_origin(tp) is not None:
        return False
    return issubclass(tp, (pathlib.PurePath, io.IOBase))


def _pydantic_schema(tp: Any) -> dict[str, Any] | None:
    for name in ("model_json_schema", "schema"):
        fn = getattr(tp, name, None)
        if callable(fn):
            try:
                out = fn()
            except Exception:  # noqa: BLE001 - not a pydantic model after all
                continue
            if isinstance(out, dict):
                return out
    return None


def json_type(tp: Any, where: str, defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema of a Python annotation (inputs and outputs)."""
    if tp is inspect.Parameter.empty or tp is typing.Any or tp is object:
        return {}
    if _is_opaque(tp):
        return {}
    if typing.get_origin(tp) is typing.Annotated:
        return json_type(typing.get_args(tp)[0], where, defs)
    inner, optional = _unwrap_optional(tp)
    if optional:
        out = json_type(inner, where, defs)
        out["nullable"] = True
        return out
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return {"anyOf": [json_type(a, where, defs) for a in typing.get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is cog.Secret:
        return {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
    if tp is datetime.datetime:
        return {"type": "string", "format": "date-time"}
    if is_file_type(tp):
        return {"type": "string", "format": "uri"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        out: dict[str, Any] = {"type": "array"}
        if args:  # tuple[X, ...] and tuple[X, Y]: the first item type
            out["items"] = json_type(args[0], where, defs)
        return out
    if tp is dict or origin in (dict, collections.abc.Mapping):
        return {"type": "object"}
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        return _enum_schema(values)
    if dataclasses.is_dataclass(tp) and inspect.isclass(tp):
        return _object_schema(tp, where, defs)
    if inspect.isclass(tp):
        schema = _pydantic_schema(tp)
        if schema is not None:
            schema = dict(schema)
            nested = schema.pop("$defs", None) or schema.pop("definitions", None)
            if nested and defs is not None:
                defs.update(nested)
            return schema
    raise SchemaError(f"{where}: unsupported type {_type_name(tp)}")


def _object_schema(tp: Any, where: str, defs: dict[str, Any] | None) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as e:  # noqa: BLE001
        raise SchemaError(f"{where}: cannot read the fields of {_type_name(tp)}: {e}") from e
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(tp):
        prop = {"title": title(f.name), **json_type(hints.get(f.name, f.type), f"{where}.{f.name}", defs)}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            required.append(f.name)
        elif f.default is not dataclasses.MISSING:
            try:
                prop["default"] = _json_default(f.default)
            except SchemaError:
                pass
        props[f.name] = prop
    out: dict[str, Any] = {"title": tp.__name__, "type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    out: dict[str, Any] = {"enum": values}
    if kinds == {str}:
        out["type"] = "string"
    elif kinds == {int}:
        out["type"] = "integer"
    elif kinds <= {int, float}:
        out["type"] = "number"
    return out


def _json_default(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, cog.Secret):
        return value.get_secret_value()
    if isinstance(value, (list, tuple)):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_default(v) for k, v in value.items()}
    raise SchemaError(f"default {value!r} is not JSON")


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


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    return resolve_hints(fn)[0]


# Input() options copied into an input's schema property when set, in Cog's key order.
_INPUT_OPTIONS = (
    ("description", "description"),
    ("ge", "minimum"),
    ("le", "maximum"),
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("regex", "pattern"),
)


def input_schema(
    fn: Callable[..., Any],
    defaults: dict[str, FieldInfo],
    components: dict[str, Any],
    schema_name: str = "Input",
) -> dict[str, Any]:
    """``components.schemas.Input``: one property per parameter, in declaration order."""
    hints = _hints(fn)
    sig = inspect.signature(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    order = 0
    for p in sig.parameters.values():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name == "self":
            continue
        info = defaults.get(p.name)
        default = p.default
        if info is not None:
            default = info.default
        elif default is inspect.Parameter.empty:
            default = MISSING
        tp = hints.get(p.name, inspect.Parameter.empty)
        where = f"input {p.name!r}"
        base, optional = _unwrap_optional(tp)
        prop: dict[str, Any] = {"title": title(p.name)}
        if info is not None and info.choices is not None:
            enum_name = p.name
            components[enum_name] = {
                "title": enum_name,
                "description": "An enumeration.",
                **_enum_schema([_json_default(c) for c in info.choices]),
            }
            prop = {"allOf": [{"$ref": f"#/components/schemas/{enum_name}"}]}
        else:
            prop.update(json_type(tp, where, components))
        if optional:
            prop["nullable"] = True
        if default is MISSING:
            if not optional:
                required.append(p.name)
        elif default is not None:
            try:
                prop["default"] = _json_default(default)
            except SchemaError as e:
                raise SchemaError(f"{where}: {e}") from e
        if info is not None:
            for attr, key in _INPUT_OPTIONS:
                value = getattr(info, attr)
                if value is not None:
                    prop[key] = value
            if info.deprecated:
                prop["deprecated"] = True
            if info.accept is not None and is_file_type(base):
                prop["x-cog-accept"] = info.accept
        prop["x-order"] = order
        order += 1
        props[p.name] = prop
    out: dict[str, Any] = {"title": schema_name, "type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def output_schema(fn: Callable[..., Any], schema_name: str = "Output") -> dict[str, Any]:
    """``components.schemas.Output`` from the return annotation (``{}`` when there is none)."""
    func = getattr(fn, "__func__", fn)
    hints = _hints(fn)
    tp = hints.get("return", inspect.Parameter.empty)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = "return type"
    iterators = {
        collections.abc.Iterator,
        collections.abc.Generator,
        collections.abc.Iterable,
        collections.abc.AsyncIterator,
        collections.abc.AsyncGenerator,
        collections.abc.AsyncIterable,
    }
    out: dict[str, Any]
    concatenate = inspect.isclass(origin) and issubclass(
        origin, (cog.ConcatenateIterator, cog.AsyncConcatenateIterator)
    )
    if concatenate or origin in iterators:
        out = {"type": "array", "items": json_type(args[0] if args else typing.Any, where), "x-cog-array-type": "iterator"}
        if concatenate:
            out["x-cog-array-display"] = "concatenate"
    elif tp is inspect.Parameter.empty and (inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)):
        out = {"type": "array", "items": {}, "x-cog-array-type": "iterator"}
    else:
        out = json_type(tp, where)
    return {**out, "title": schema_name}


def _status() -> dict[str, Any]:
    return {
        "title": "Status",
        "description": "An enumeration.",
        "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
        "type": "string",
    }


def _validation_components() -> dict[str, Any]:
    return {
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {"title": "Detail", "type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}
            },
        },
        "ValidationError": {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {"title": "Location", "type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                "msg": {"title": "Message", "type": "string"},
                "type": {"title": "Error Type", "type": "string"},
            },
        },
    }


def _request(name: str, input_name: str) -> dict[str, Any]:
    return {
        "title": name,
        "type": "object",
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": f"#/components/schemas/{input_name}"},
            "context": {"title": "Context", "type": "object", "additionalProperties": {"type": "string"}},
            "webhook": {"title": "Webhook", "type": "string", "format": "uri", "maxLength": 65536, "minLength": 1},
            "webhook_events_filter": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/WebhookEvent"},
                "default": ["start", "output", "logs", "completed"],
            },
        },
    }


def _response(name: str, input_name: str, output_name: str) -> dict[str, Any]:
    return {
        "title": name,
        "type": "object",
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": f"#/components/schemas/{input_name}"},
            "output": {"$ref": f"#/components/schemas/{output_name}"},
            "status": {"$ref": "#/components/schemas/Status"},
            "error": {"title": "Error", "type": "string"},
            "logs": {"title": "Logs", "type": "string", "default": ""},
            "metrics": {"title": "Metrics", "type": "object"},
        },
    }


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(summary: str, op_id: str, request: str | None, response: str | None) -> dict[str, Any]:
    body = {"$ref": f"#/components/schemas/{response}"} if response else {"title": "Response"}
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": op_id,
        "responses": {"200": {"description": "Successful Response", "content": _json_content(body)}},
    }
    if request is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}}}
        op["responses"]["422"] = {
            "description": "Validation Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        }
    return op


def build(
    fn: Callable[..., Any],
    defaults: dict[str, FieldInfo],
    mode: str,
    version: str,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole OpenAPI document for ``fn`` (run/predict in predict mode, train in train mode).
    ``warn`` hears what was left imprecise (unresolvable annotations, an unknown return type)."""
    _, problems = resolve_hints(fn)
    for problem in problems:
        if warn is not None:
            warn(f"annotation not resolved, treated as any JSON: {problem}")
    components: dict[str, Any] = {}
    if mode == "train":
        input_name, output_name, request, response, route = (
            "TrainingInput",
            "TrainingOutput",
            "TrainingRequest",
            "TrainingResponse",
            "trainings",
        )
    else:
        input_name, output_name, request, response, route = (
            "Input",
            "Output",
            "PredictionRequest",
            "PredictionResponse",
            "predictions",
        )
    extra: dict[str, Any] = {}  # enum schemas of choices, nested definitions
    components[input_name] = input_schema(fn, defaults, extra, input_name)
    try:
        components[output_name] = output_schema(fn, output_name)
    except SchemaError as e:
        # Outputs are encoded by value at run time; an unknown return annotation only costs the
        # schema its precision.
        if warn is not None:
            warn(f"{output_name} schema left open: {e}")
        components[output_name] = {"title": output_name}
    components[request] = _request(request, input_name)
    components[response] = _response(response, input_name, output_name)
    components["Status"] = _status()
    components["WebhookEvent"] = {
        "title": "WebhookEvent",
        "description": "An enumeration.",
        "enum": ["start", "output", "logs", "completed"],
        "type": "string",
    }
    components.update(_validation_components())
    for name, value in extra.items():
        components.setdefault(name, value)
    func = getattr(fn, "__func__", fn)
    singular = route[:-1]
    create = _operation(f"Create {singular.capitalize()}", f"{route}_create", request, response)
    if getattr(func, "__cog_streaming__", False) and mode != "train":
        create["x-cog-streaming"] = True
    paths: dict[str, Any] = {
        "/": {"get": _operation("Root", "root__get", None, None)},
        "/health-check": {"get": _operation("Healthcheck", "healthcheck_health_check_get", None, None)},
        f"/{route}": {"post": create},
        f"/{route}/{{{singular}_id}}": {
            "put": _operation(f"Create {singular.capitalize()} Idempotent", f"{route}_idempotent", request, response)
        },
        f"/{route}/{{{singular}_id}}/cancel": {
            "post": _operation(f"Cancel {singular.capitalize()}", f"cancel_{route}", None, None)
        },
        "/shutdown": {"post": _operation("Start Shutdown", "start_shutdown_shutdown_post", None, None)},
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Cog", "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }
