"""`python -m cog.server.http`: Cog's launcher flags translated to `cogvisor serve` flags."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cog.server import http as launcher

PYTHON_DIR = Path(__file__).resolve().parents[1]


def args(*argv: str) -> list[str]:
    return launcher.translate(argv).args


def test_defaults_serve_the_current_directory_in_predict_mode():
    assert args() == ["serve", ".", "--host", "0.0.0.0", "--await-explicit-shutdown", "false", "--mode", "predict"]


def test_cog_flags_are_translated():
    out = args(
        "--host", "127.0.0.1", "--port", "5050", "--upload-url", "http://u/upload/",
        "--await-explicit-shutdown", "true", "--x-mode", "train", "--threads", "4",
    )
    assert out == [
        "serve", ".", "--host", "127.0.0.1", "--port", "5050", "--upload-url", "http://u/upload/",
        "--await-explicit-shutdown", "true", "--mode", "train",
    ]


def test_equals_forms_are_accepted():
    out = args("--upload-url=http://u/x/", "--x-mode=train", "--await-explicit-shutdown=1")
    assert "--upload-url" in out and out[out.index("--upload-url") + 1] == "http://u/x/"
    assert out[out.index("--mode") + 1] == "train"
    assert out[out.index("--await-explicit-shutdown") + 1] == "true"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", "true"), ("True", "true"), ("1", "true"), ("false", "false"), ("0", "false"), ("no", "false")],
)
def test_await_explicit_shutdown_is_a_real_boolean(value, expected):
    out = args("--await-explicit-shutdown", value)
    assert out[out.index("--await-explicit-shutdown") + 1] == expected


def test_await_explicit_shutdown_without_a_value_turns_it_on():
    out = args("--await-explicit-shutdown")
    assert out[out.index("--await-explicit-shutdown") + 1] == "true"


def test_a_bad_boolean_is_an_error_naming_it(capsys):
    with pytest.raises(SystemExit) as e:
        launcher.translate(["--await-explicit-shutdown", "maybe"])
    assert e.value.code == 2
    assert "'maybe'" in capsys.readouterr().err


def test_a_bad_mode_is_an_error(capsys):
    with pytest.raises(SystemExit):
        launcher.translate(["--x-mode", "serve"])
    assert "serve" in capsys.readouterr().err


def test_unknown_flags_are_ignored_with_a_warning():
    t = launcher.translate(["--log-level", "debug", "--port", "1"])
    assert t.args[t.args.index("--port") + 1] == "1"
    assert "--log-level" not in t.args and "debug" not in t.args
    assert any("--log-level" in w for w in t.warnings), t.warnings


def test_threads_is_accepted_and_ignored():
    t = launcher.translate(["--threads", "8"])
    assert "8" not in t.args and not t.warnings


def test_the_worker_python_is_the_launchers():
    t = launcher.translate([], python="/opt/venv/bin/python")
    assert t.args[-2:] == ["--python", "/opt/venv/bin/python"]


def test_version_asks_the_binary():
    t = launcher.translate(["-v"])
    assert t.version and t.args == ["--version"]


def _fake_binary(tmp_path: Path, name: str = "cogvisor") -> Path:
    """A stand-in binary that prints its arguments and working directory."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text('#!/bin/sh\nprintf "%s\\n" "$PWD" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_binary_comes_from_cogvisor_bin_then_the_install_then_path(tmp_path):
    on_path = _fake_binary(tmp_path / "path")
    installed = _fake_binary(tmp_path / "venv-bin")
    explicit = _fake_binary(tmp_path / "explicit")
    env = {"PATH": str(on_path.parent)}
    assert launcher.find_binary({**env, "COGVISOR_BIN": str(explicit)}, installed=[installed]) == str(explicit)
    assert launcher.find_binary(env, installed=[tmp_path / "absent", installed]) == str(installed)
    assert launcher.find_binary(env, installed=[tmp_path / "absent"]) == str(on_path)


def test_the_installed_binary_is_beside_a_target_install_or_in_the_scripts_dir():
    import sysconfig

    candidates = launcher.installed_binaries()
    # `pip install --target DIR`: DIR/cog/server/http.py and DIR/bin/cogvisor.
    assert candidates[0] == Path(launcher.__file__).resolve().parents[2] / "bin" / "cogvisor"
    # An install into this Python's environment (a venv's bin, not necessarily on PATH).
    assert Path(sysconfig.get_path("scripts")) / "cogvisor" in candidates


def test_a_missing_binary_names_every_place(tmp_path):
    with pytest.raises(launcher.LauncherError) as e:
        launcher.find_binary({"PATH": str(tmp_path)}, installed=[tmp_path / "absent"])
    assert "COGVISOR_BIN" in str(e.value) and "PATH" in str(e.value) and "wheel" in str(e.value)
    with pytest.raises(launcher.LauncherError) as e:
        launcher.find_binary({"COGVISOR_BIN": str(tmp_path / "nope")})
    assert "nope" in str(e.value)


def _run_module(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(PYTHON_DIR), **env}
    return subprocess.run(
        [sys.executable, "-m", "cog.server.http", *argv],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=60,
    )


def test_the_module_execs_the_binary_in_the_current_directory(tmp_path):
    fake = _fake_binary(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    r = _run_module(["--x-mode", "train", "--bogus"], model, {"COGVISOR_BIN": str(fake)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert Path(lines[0]).resolve() == model.resolve()
    assert lines[1:3] == ["serve", "."]
    assert lines[lines.index("--mode") + 1] == "train"
    assert "ignoring unknown option '--bogus'" in r.stderr


def test_the_module_fails_clearly_without_a_binary(tmp_path):
    r = _run_module([], tmp_path, {"PATH": str(tmp_path)})
    assert r.returncode == 1
    assert "COGVISOR_BIN" in r.stderr
