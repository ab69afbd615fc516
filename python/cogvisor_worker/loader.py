"""Loading the model: import the predictor file, pick the object and its method, run setup."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from cog.types import MISSING, FieldInfo

from . import inputs, schema


class LoadError(Exception):
    """The predictor reference cannot be turned into a callable model."""


@dataclass
class Model:
    obj: Any  # the instance, or the function itself
    method: Callable[..., Any]
    is_async: bool
    required_inputs: set[str] = field(default_factory=set)
    # Parameter name -> how its raw JSON input becomes the argument (downloads, Secret, ...).
    coercions: dict[str, inputs.Coercion] = field(default_factory=dict)
    # Parameter name -> its ``Input(...)`` declaration, as written (for the schema).
    fields: dict[str, FieldInfo] = field(default_factory=dict)
    mode: str = "predict"
    accepts_var_kwargs: bool = False
    parameters: set[str] = field(default_factory=set)

    def healthcheck(self) -> Callable[[], Any] | None:
        if inspect.isroutine(self.obj):
            return None
        hc = getattr(self.obj, "healthcheck", None)
        return hc if callable(hc) else None


_imported: dict[str, Any] = {}  # absolute path -> module: a file is imported once per worker


def _import_file(path: str) -> Any:
    abspath = os.path.abspath(path)
    if not os.path.isfile(abspath):
        raise LoadError(f"predictor file {path} not found in {os.getcwd()}")
    if abspath in _imported:
        return _imported[abspath]
    model_dir = os.getcwd()
    if model_dir not in sys.path:
        sys.path.insert(0, model_dir)
    file_dir = os.path.dirname(abspath)
    if file_dir not in sys.path:
        sys.path.insert(0, file_dir)
    name = os.path.splitext(os.path.basename(abspath))[0]
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) != abspath:
        name = f"cogvisor_model_{name}"
    spec = importlib.util.spec_from_file_location(name, abspath)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _imported[abspath] = module
    return module


def _defined(obj: Any, name: str) -> bool:
    return callable(getattr(obj, name, None))


def _pick_method(obj: Any, mode: str) -> Callable[..., Any]:
    if inspect.isroutine(obj):
        return obj
    if mode == "train":
        if not _defined(obj, "train"):
            raise LoadError(f"{type(obj).__name__} does not define train()")
        return getattr(obj, "train")
    has_run, has_predict = _defined(obj, "run"), _defined(obj, "predict")
    if has_run and has_predict:
        raise LoadError("predictor must define either run() or predict(), not both")
    if not has_run and not has_predict:
        raise LoadError("predictor must define run() or predict()")
    return getattr(obj, "run" if has_run else "predict")


def _fix_input_defaults(fn: Callable[..., Any]) -> tuple[set[str], dict[str, FieldInfo]]:
    """Replace ``Input(...)`` defaults by their values; return the names of required inputs and the
    ``Input(...)`` declarations."""
    func = getattr(fn, "__func__", fn)
    required: set[str] = set()
    fields: dict[str, FieldInfo] = {}
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return required, fields
    # The declarations are kept on the function: a second load of the same function sees values.
    fields.update(getattr(func, "__cogvisor_fields__", {}))
    for p in sig.parameters.values():
        if isinstance(p.default, FieldInfo):
            fields[p.name] = p.default
    required = {name for name, info in fields.items() if info.default is MISSING}
    try:
        func.__cogvisor_fields__ = dict(fields)
    except (AttributeError, TypeError):
        pass

    def value(d: Any) -> Any:
        if isinstance(d, FieldInfo):
            return None if d.default is MISSING else d.default
        return d

    defaults = getattr(func, "__defaults__", None)
    if defaults:
        func.__defaults__ = tuple(value(d) for d in defaults)
    kwdefaults = getattr(func, "__kwdefaults__", None)
    if kwdefaults:
        func.__kwdefaults__ = {k: value(v) for k, v in kwdefaults.items()}
    return required, fields


def _target(predictor_ref: str) -> Any:
    """The class or function ``path/to/file.py[:Name]`` names (``Runner``, then ``Predictor``, when no
    name is given), imported relative to the working directory."""
    path, sep, name = predictor_ref.rpartition(":")
    if not sep or "/" in name or name.endswith(".py"):
        path, sep, name = predictor_ref, "", ""
    module = _import_file(path)
    if sep:  # an explicit name, even an empty one (coglet looks that up too, and fails)
        try:
            return getattr(module, name)  # also what a module __getattr__ produces
        except AttributeError as e:
            raise LoadError(f"{path} defines nothing named {name!r} (AttributeError: {e})") from None
    if hasattr(module, "Runner"):
        return getattr(module, "Runner")
    if hasattr(module, "Predictor"):
        return getattr(module, "Predictor")
    raise LoadError(f"{path} defines neither Runner nor Predictor")


def load(predictor_ref: str, mode: str) -> Model:
    """Import ``path/to/file.py[:Name]`` relative to the working directory and build the model."""
    target = _target(predictor_ref)
    if inspect.isclass(target):
        obj = target()
    elif inspect.isroutine(target):
        obj = target
    else:
        raise LoadError(f"{predictor_ref} is neither a class nor a function")
    method = _pick_method(obj, mode)
    required, fields = _fix_input_defaults(method)
    fn = getattr(method, "__func__", method)
    is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    return Model(
        obj=obj,
        method=method,
        is_async=is_async,
        required_inputs=required,
        coercions=inputs.coercions(method),
        fields=fields,
        mode=mode,
        accepts_var_kwargs=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()),
        parameters={p.name for p in params.values()},
    )


def setup_callable(model: Model, setup_mode: str) -> Callable[[], Any] | None:
    """The setup to run: ``recycle_setup()`` for a recycle when defined, else ``setup()``; None if neither."""
    obj = model.obj
    if inspect.isroutine(obj):
        return None
    fn: Callable[..., Any] | None = None
    if setup_mode == "recycle" and _defined(obj, "recycle_setup"):
        fn = getattr(obj, "recycle_setup")
    elif _defined(obj, "setup"):
        fn = getattr(obj, "setup")
    if fn is None:
        return None
    try:
        wants_weights = "weights" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        wants_weights = False
    if wants_weights:
        setup_fn = fn
        weights = os.environ.get("COG_WEIGHTS")
        return lambda: setup_fn(weights=weights)
    return fn


def describe(predictor_ref: str, mode: str) -> Callable[..., Any]:
    """The run/predict (or train) function ``predictor_ref`` names, for its signature only: the file is
    imported, the class is not instantiated and nothing else runs."""
    target = _target(predictor_ref)
    if not (inspect.isclass(target) or inspect.isroutine(target)):
        raise LoadError(f"{predictor_ref} is neither a class nor a function")
    return _pick_method(target, mode)


def build_schema(
    model: Model,
    schema_refs: dict[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Any:
    """The OpenAPI document ``cog build`` would write, built from the signatures; None for a
    ``**kwargs`` signature (which has no fixed inputs). With both a predict and a train reference in
    ``schema_refs`` (cog.yaml's), the merged document of both, whichever mode is served: the other
    mode's function is read from its file without running it. Raises schema.SchemaError naming an input
    type it cannot express."""
    if model.accepts_var_kwargs:
        return None
    own = schema.build(model.method, model.fields, model.mode, warn)
    other_mode = "train" if model.mode == "predict" else "predict"
    other_ref = (schema_refs or {}).get(other_mode)
    if not other_ref or not (schema_refs or {}).get(model.mode):
        return own
    try:
        other = schema.build(describe(other_ref, other_mode), None, other_mode, warn)
    except Exception as e:  # noqa: BLE001 - the served mode's document still stands
        if warn is not None:
            warn(f"the {other_mode} part of the OpenAPI schema is left out: {other_ref}: {type(e).__name__}: {e}")
        return own
    if model.mode == "predict":
        return schema.merge(own, other)
    return schema.merge(other, own)


def read_schema(model_dir: str = ".") -> Any:
    """The OpenAPI document from ``.cog/openapi_schema.json``, or None when absent or unreadable."""
    import json

    try:
        with open(os.path.join(model_dir, ".cog", "openapi_schema.json"), "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
