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


def _assert_one_error_line(result, *needles):
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, f"exit code {result.returncode}\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cogvisor: error: "), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_a_bad_flag_value_is_one_line_and_exit_1():
    _assert_one_error_line(run_to_exit(["serve", str(EXAMPLES / "hello"), "--port", "99999"]), "--port", "99999")
    _assert_one_error_line(
        run_to_exit(["serve", str(EXAMPLES / "hello"), "--await-explicit-shutdown", "maybe"]), "maybe"
    )


def test_an_unknown_flag_is_one_line_naming_it_and_a_near_one():
    _assert_one_error_line(run_to_exit(["serve", "--health-perod", "10s"]), "--health-perod", "--health-period")
    _assert_one_error_line(run_to_exit(["config", "--frob"]), "--frob")
    _assert_one_error_line(run_to_exit(["frob"]), "frob")


def test_help_still_exits_0_with_the_help():
    for args in (["--help"], ["serve", "--help"], ["config", "--help"]):
        result = run_to_exit(args)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert b"Usage: cogvisor" in result.stdout, result.stdout.decode(errors="replace")


def test_no_command_shows_the_help_and_fails_with_one_last_line():
    result = run_to_exit([])
    _assert_exit_1_naming(result, "no command given")
    assert b"Usage: cogvisor" in result.stderr


def test_a_model_dir_without_cog_yaml_says_the_file_is_missing(tmp_path):
    model = tmp_path / "empty"
    model.mkdir()
    for command in ("serve", "config"):
        args = _serve_args(model) if command == "serve" else ["config", str(model)]
        result = run_to_exit(args)
        _assert_exit_1_naming(result, f"{model / 'cog.yaml'} is missing")


def test_an_unknown_cog_yaml_key_warns_and_the_model_still_serves(serve, tmp_path):
    model = tmp_path / "typo"
    model.mkdir()
    (model / "predict.py").write_text((EXAMPLES / "hello" / "predict.py").read_text())
    (model / "cog.yaml").write_text('predict: "predict.py:Predictor"\nconcurency:\n  max: 2\n')
    server = serve(model)
    warnings = [line for line in server.stderr_text().splitlines() if "concurency" in line]
    assert warnings, server.stderr_tail()
    assert "known keys: build, concurrency" in warnings[0], warnings[0]
    assert '"level":"WARN"' in warnings[0], warnings[0]


def test_an_unknown_settings_file_key_stops_the_start(tmp_path):
    # cogvisor.yaml holds only cogvisor's keys: an unknown one is a typo, so the start stops.
    model = tmp_path / "typo"
    model.mkdir()
    (model / "predict.py").write_text((EXAMPLES / "hello" / "predict.py").read_text())
    (model / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    (model / "cogvisor.yaml").write_text("health:\n  perod: 10s\n")
    _assert_exit_1_naming(run_to_exit(_serve_args(model)), '"health.perod"')
