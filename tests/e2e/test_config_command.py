"""`cogvisor config MODEL_DIR` prints what `serve` would use, with each value's source, Cog's own
sources (`cog.yaml` `concurrency.max`, `COG_MAX_CONCURRENCY`, `COG_SETUP_TIMEOUT`) included; and every
command that prints ends quietly when its reader goes away (`cogvisor config | head -1`)."""

from __future__ import annotations

import os
import re
import subprocess

from helpers import BIN, EXAMPLES, REPO, run_to_exit

HELLO_PREDICTOR = (EXAMPLES / "hello" / "predict.py").read_text()


def _model(tmp_path, cog_yaml: str):
    model = tmp_path / "model"
    model.mkdir()
    (model / "cog.yaml").write_text(cog_yaml)
    (model / "predict.py").write_text(HELLO_PREDICTOR)
    return model


def _config(model, *flags: str, env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Runs `cogvisor config MODEL` and returns key -> (value, source)."""
    clean = {k: "" for k in os.environ if k.startswith("COGVISOR_") or k in ("COG_MAX_CONCURRENCY", "COG_SETUP_TIMEOUT")}
    result = run_to_exit(["config", str(model), *flags], env={**clean, **(env or {})})
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"exit {result.returncode}\n{stderr}"
    lines = {}
    for line in result.stdout.decode().splitlines():
        m = re.fullmatch(r"(\S+)\s+(.*?)\s+# (.*)", line)
        assert m, f"unexpected config line {line!r}"
        lines[m.group(1)] = (m.group(2), m.group(3))
    return lines


def test_concurrency_shows_its_effective_value_and_each_source_in_order(tmp_path):
    model = _model(tmp_path, 'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\nconcurrency:\n  max: 3\n')
    cog_yaml = model / "cog.yaml"
    assert _config(model)["concurrency"] == ("3", f"{cog_yaml} concurrency.max")
    env = {"COG_MAX_CONCURRENCY": "5"}
    assert _config(model, env=env)["concurrency"] == ("5", "environment COG_MAX_CONCURRENCY")
    env["COGVISOR_CONCURRENCY"] = "2"
    assert _config(model, env=env)["concurrency"] == ("2", "environment COGVISOR_CONCURRENCY")
    assert _config(model, "--concurrency", "7", env=env)["concurrency"] == ("7", "flag")


def test_concurrency_from_the_decorator_and_the_default(tmp_path):
    model = _model(tmp_path, 'predict: "predict.py:Predictor"\n')
    assert _config(model)["concurrency"] == ("1", "default")
    (model / "predict.py").write_text(
        "import cog\nclass Predictor(cog.BasePredictor):\n    @cog.concurrent(max=4)\n    async def predict(self) -> str:\n        return 'x'\n"
    )
    assert _config(model)["concurrency"] == ("4", f"@concurrent(max=N) in {model / 'predict.py'}")


def test_setup_timeout_shows_cogs_variable(tmp_path):
    model = _model(tmp_path, 'predict: "predict.py:Predictor"\n')
    assert _config(model)["setup_timeout"] == ("none", "default")
    assert _config(model, env={"COG_SETUP_TIMEOUT": "30"})["setup_timeout"] == ("30s", "environment COG_SETUP_TIMEOUT")
    assert _config(model, env={"COG_SETUP_TIMEOUT": "0"})["setup_timeout"] == ("none", "environment COG_SETUP_TIMEOUT")
    over = {"COG_SETUP_TIMEOUT": "30", "COGVISOR_SETUP_TIMEOUT": "2m"}
    assert _config(model, env=over)["setup_timeout"] == ("2m", "environment COGVISOR_SETUP_TIMEOUT")


def test_config_lists_exactly_the_keys_of_the_doc_in_its_order():
    doc = (REPO / "docs" / "configuration.md").read_text()
    doc_keys = re.findall(r"^\| `([a-z_.]+)` \|", doc, flags=re.M)
    assert doc_keys, "no key rows in docs/configuration.md"
    assert list(_config(EXAMPLES / "hello")) == doc_keys


def test_an_unknown_cog_yaml_key_is_a_warning_naming_it_and_the_known_ones(tmp_path):
    model = _model(tmp_path, 'predict: "predict.py:Predictor"\nconcurency:\n  max: 2\n')
    result = run_to_exit(["config", str(model)])
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr
    warning = next((l for l in stderr.splitlines() if "concurency" in l), "")
    assert warning.startswith("cogvisor: warning: "), stderr
    assert "build, concurrency, environment" in warning, warning
    assert result.stdout.decode().startswith("concurrency "), "the config is still printed"


def _run_with_closed_stdout(args: list[str]) -> subprocess.CompletedProcess:
    """Runs the binary with stdout a pipe nobody reads any more: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ)
    env.pop("PORT", None)
    try:
        return subprocess.run(
            [str(BIN), *args],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=30,
            start_new_session=True,
        )
    finally:
        os.close(write_end)


def test_every_printing_command_ends_quietly_when_stdout_is_closed():
    # As ripgrep does: the reader had what it wanted, so the command ends with status 0 and says nothing.
    for args in (
        ["config", str(EXAMPLES / "hello")],
        ["--help"],
        ["--version"],
        ["help"],
        ["serve", "--help"],
        ["config", "--help"],
    ):
        result = _run_with_closed_stdout(args)
        stderr = result.stderr.decode(errors="replace")
        assert (result.returncode, stderr) == (0, ""), f"{args}: exit {result.returncode}\n{stderr}"


def test_config_piped_into_head_ends_quietly():
    result = subprocess.run(
        f"'{BIN}' config '{EXAMPLES / 'hello'}' | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=30,
    )
    out = result.stdout.decode()
    assert out.startswith("concurrency "), out
    assert out.rstrip().endswith("status=0"), out
    assert result.stderr == b"", result.stderr.decode(errors="replace")
