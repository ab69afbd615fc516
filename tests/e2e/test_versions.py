"""Versions: the Cog version cogvisor is compatible with (0.23.1) where Cog reports its version, and
cogvisor's own beside it. The Rust constant (GET / `cog_version`, /health-check `version.coglet`) and the
SDK's `cog.__version__` (which the worker reports as `version.python_sdk`) must agree."""

import re
import subprocess

from helpers import BIN, REPO

COMPATIBLE = "0.23.1"


def own_version() -> str:
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.search(r"\d+\.\d+\.\d+\S*", out)
    assert match, out
    return match.group(0)


def sdk_version_in_source() -> str:
    text = (REPO / "python" / "cog" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert match, "no __version__ in python/cog/__init__.py"
    return match.group(1)


def test_discovery_reports_the_compatible_cog_version_and_cogvisors_own(serve):
    server = serve("hello")
    status, root = server.get_json("/")
    assert status == 200, root
    assert root["cog_version"] == COMPATIBLE
    assert root["cogvisor_version"] == own_version()


def test_health_check_versions_match_discovery_and_the_sdk(serve):
    server = serve("hello")
    _, root = server.get_json("/")
    version = server.health()["version"]
    assert version["coglet"] == root["cog_version"] == COMPATIBLE
    assert version["cogvisor"] == root["cogvisor_version"]
    # What the worker's `cog.__version__` says: the Python constant, the same Cog version.
    assert version["python_sdk"] == root["cog_version"] == sdk_version_in_source()
    assert re.fullmatch(r"3\.\d+\.\d+\S*", version["python"]), version


def test_the_sdk_says_the_compatible_version(serve, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    (model / "predict.py").write_text(
        "import cog\n\nclass Predictor(cog.BasePredictor):\n    def predict(self) -> str:\n        return cog.__version__\n"
    )
    server = serve(model)
    status, body = server.predict({})
    assert status == 200, body
    assert body["output"] == COMPATIBLE
