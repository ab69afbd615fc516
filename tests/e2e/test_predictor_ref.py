"""The predictor ref is resolved by importing the model, as in coglet: a file that defines its predictor
class only at import time (star import, globals().update(), exec, a module __getattr__) is served, and a
name the module really lacks is a setup failure that says so, not a refusal to start."""

import shutil

import pytest

from helpers import EXAMPLES, assert_succeeded


@pytest.mark.parametrize(
    ("model", "output"),
    [
        ("star_import", "star x"),
        ("globals_update", "globals x"),
        ("exec_defined", "exec x"),
        ("module_getattr", "getattr x"),
    ],
)
def test_a_predictor_defined_at_import_time_is_served(serve, model, output):
    server = serve(model)
    status, body = server.predict({"text": "x"})
    assert_succeeded(status, body)
    assert body["output"] == output, body


def test_a_missing_predictor_name_is_setup_failed_with_the_reason(serve, tmp_path):
    model = tmp_path / "nope"
    model.mkdir()
    shutil.copy(EXAMPLES / "hello" / "predict.py", model / "predict.py")
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Nope"\n')
    server = serve(model, wait="SETUP_FAILED")
    h = server.health()
    assert h["setup"]["status"] == "failed", h
    assert (
        "cannot load predict.py:Nope: predict.py defines nothing named 'Nope' "
        "(AttributeError: module 'predict' has no attribute 'Nope')" in h["setup"]["logs"]
    ), h
    status, body = server.predict({})
    assert status == 503, body
