"""Starts that cannot work exit 1 at once, and the last line of stderr names the problem."""

import socket

from helpers import EXAMPLES, MODELS, free_port, last_line, run_to_exit


def _serve_args(model_dir, port=None):
    return ["serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port or free_port())]


def _assert_exit_1_naming(result, needle):
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, f"exit code {result.returncode}\n{stderr}"
    line = last_line(stderr)
    assert needle in line, f"{needle!r} not in the last stderr line: {line!r}\n{stderr}"


def test_missing_model_dir(tmp_path):
    missing = tmp_path / "no-such-model"
    _assert_exit_1_naming(run_to_exit(_serve_args(missing)), str(missing))


def test_cog_yaml_without_predictor():
    model = MODELS / "no_predictor"
    _assert_exit_1_naming(run_to_exit(_serve_args(model)), str(model))


def test_missing_predictor_file(tmp_path):
    # Certainly wrong before any import: the start-up check refuses it (coglet: SETUP_FAILED with
    # FileNotFoundError). A missing *name* is left to the import: see test_predictor_ref.py.
    model = tmp_path / "nofile"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "missing.py:Predictor"\n')
    _assert_exit_1_naming(run_to_exit(_serve_args(model)), "missing.py")


def test_port_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _assert_exit_1_naming(run_to_exit(_serve_args(EXAMPLES / "hello", port)), str(port))
