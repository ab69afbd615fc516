"""The worker's OpenAPI document equals what `cog build` writes, for whole models (tests/models/schema_*).

Each model directory holds ``openapi.golden.json``: the document cog 0.23.1's Go generator
(replicate/cog ``pkg/schema``) writes to ``.cog/openapi_schema.json`` for that predictor. No cog CLI
runs here (it needs Docker, and no PyPI package carries the Go binary: the ``cog`` wheel is the Python
SDK only), so the goldens were written by hand from the Go code and its own tests. Where each field
comes from:

* ``openapi``, ``info`` (``{"title": "Cog", "version": "0.23.1"}``: ``global.Version``, the CLI's
  version), the paths ``/`` and ``/health-check`` (``schema: {}``), ``/predictions`` or
  ``/trainings`` (``summary`` Predict/Train, ``description`` "Run a single prediction/training on the
  model", ``operationId`` predict_predictions_post/train_trainings_post, 200 and 422 responses,
  ``x-cog-streaming`` for ``@cog.streaming``), the cancel path (``operationId``
  cancel_predictions__prediction_id__cancel_post, the path parameter titled ``TitleCase`` of its
  name): ``buildOpenAPISpec`` in ``openapi_spec.go``. There is no PUT nor ``/shutdown`` path.
* ``PredictionRequest`` (``id``, ``input``), ``PredictionResponse`` (``input``, ``output``, ``id``,
  ``version``, ``created_at``/``started_at``/``completed_at`` as date-time, ``status`` a plain string,
  ``error``, ``logs`` without default, ``metrics``), ``Status``, ``HTTPValidationError``,
  ``ValidationError``, and the Training* twins: ``buildOpenAPISpec``.
* ``Input``/``TrainingInput``: ``buildInputSchema``: ``x-order`` is the parameter's position after
  ``self``; ``title`` is ``TitleCase(name)`` (``_private_flag`` -> `` Private Flag``, ``max__len`` ->
  ``Max  Len``) except beside ``allOf``; the type from ``inputTypeJSONSchema`` /
  ``FieldType.JSONType`` (``PrimitiveType.JSONType``: Path ``format: uri``, Secret ``format:
  password`` + ``writeOnly`` + ``x-cog-secret``, ``dict`` ``{"type": "object"}``, ``List[X]`` an array,
  a union ``anyOf`` with each member nullable when the union is); ``default`` from
  ``DefaultValue.ToJSON`` (whole floats as Go writes float64: ``1.0`` -> ``1``), left out when it is
  None on a type that is not nullable, which then is ``required`` (``seed``, ``photo``), except a bare
  Secret, which None makes nullable (``api_key``: ``"default": null, "nullable": true``);
  ``nullable`` for Optional; ``description``, ``minimum``/``maximum`` (``ge``/``le`` as float64),
  ``minLength``/``maxLength``, ``pattern``, ``deprecated``, ``x-cog-accept``; choices as a component
  named after the parameter (``title`` the bare name, ``description`` "An enumeration.", ``type`` of the
  annotation's primitive) referenced through ``allOf``; ``required`` in parameter order.
* ``Output``/``TrainingOutput``: ``SchemaType.JSONSchema`` in ``schema_type.go``, titled ``Output`` in
  both; a BaseModel is an object of its fields (each titled, ``nullable`` when Optional, required
  unless Optional or defaulted, no default written), ``dict[str, int]`` has ``additionalProperties``,
  ``Iterator[X]`` is an array with ``x-cog-array-type: iterator``, a ConcatenateIterator adds
  ``x-cog-array-display: concatenate``.
* schema_train: cog.yaml names ``predict`` and ``train``: ``GenerateCombined`` builds both documents
  and ``MergeSchemas`` adds the train document's paths and components to the predict one. The worker
  serves that document in both modes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from harness import Supervisor

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests", "models")
TRAIN_REFS = {"predict": "predict.py:Predictor", "train": "train.py:train"}

# (model dir, served predictor ref, mode, schema_refs as the server sends them from cog.yaml)
CASES = [
    ("schema_inputs", "predict.py:Predictor", "predict", {"predict": "predict.py:Predictor"}),
    ("schema_iterator", "predict.py:Predictor", "predict", {"predict": "predict.py:Predictor"}),
    ("schema_stream", "predict.py:Predictor", "predict", {"predict": "predict.py:Predictor"}),
    ("schema_list_path", "predict.py:predict", "predict", {"predict": "predict.py:predict"}),
    ("schema_train", "predict.py:Predictor", "predict", TRAIN_REFS),
    ("schema_train", "train.py:train", "train", TRAIN_REFS),
]


def differences(got: Any, want: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ, types included (1 and 1.0 are written differently)."""
    if type(got) is not type(want):
        return [f"{path}: got {got!r}, want {want!r}"]
    if isinstance(got, dict):
        out = []
        for key in sorted(set(got) | set(want)):
            if key not in got:
                out.append(f"{path}.{key}: missing, want {want[key]!r}")
            elif key not in want:
                out.append(f"{path}.{key}: unexpected {got[key]!r}")
            else:
                out += differences(got[key], want[key], f"{path}.{key}")
        return out
    if isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: got {got!r}, want {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: got {got!r}, want {want!r}"]


def test_differences_sees_types_and_missing_keys() -> None:
    assert differences({"a": 1}, {"a": 1.0}) == ["$.a: got 1, want 1.0"]
    assert differences({"a": [True]}, {"a": [1]}) == ["$.a[0]: got True, want 1"]
    assert differences({}, {"b": None}) == ["$.b: missing, want None"]
    assert differences({"a": {"b": 2}}, {"a": {"b": 2}}) == []


def model_files(name: str) -> dict[str, str]:
    directory = os.path.join(MODELS, name)
    files = {}
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".py") or entry == "cog.yaml":
            with open(os.path.join(directory, entry), encoding="utf-8") as f:
                files[entry] = f.read()
    return files


def golden(name: str) -> Any:
    with open(os.path.join(MODELS, name, "openapi.golden.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize(("name", "ref", "mode", "refs"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_worker_schema_equals_cog_build(name: str, ref: str, mode: str, refs: dict[str, str]) -> None:
    sup = Supervisor(model_files(name), predictor_ref=ref, mode=mode, schema_refs=refs)
    try:
        ready = sup.ready()
        assert ready["type"] == "ready", ready
        warnings = [m["message"] for m in sup.control_seen if m["type"] == "worker_log" and m["level"] == "warning"]
        assert warnings == []
        diffs = differences(ready["schema"], golden(name))
        assert diffs == [], "\n".join(diffs)
    finally:
        sup.close()
