"""The README's `serve` synopsis is the binary's: every flag of `cogvisor serve --help` is in it, and
nothing else; `serve` without `--host` listens on every interface (0.0.0.0), as the README says; and
`make serve PORT=...` reaches `--port`."""

from __future__ import annotations

import os
import re
import subprocess

from helpers import BIN, EXAMPLES, REPO, Server, free_port, wait_listening

README = (REPO / "README.md").read_text()
FLAG = re.compile(r"--[a-z][a-z-]*")


def _section(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return text[i : text.index(end, i)]


def _help_options() -> set[str]:
    """The flags of `serve --help`'s Options section (the settings follow in their own section)."""
    r = subprocess.run([str(BIN), "serve", "--help"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    options = _section(r.stdout, "Options:", "Settings")
    flags = {m.group(1) for line in options.splitlines() if (m := re.match(r"\s*(?:-\w, )?(--[a-z][a-z-]*)", line))}
    return flags - {"--help"}


def test_the_readme_synopsis_names_every_serve_flag():
    synopsis = _section(README, "cogvisor serve [MODEL_DIR]", "cogvisor config MODEL_DIR")
    documented = set(FLAG.findall(synopsis))
    table = _section(README, "| flag | default | what |", "\n\n")
    in_table = set(FLAG.findall(table))
    flags = _help_options()
    assert "--await-explicit-shutdown" in flags and "--python-path" in flags, flags
    assert documented == flags, f"README synopsis {sorted(documented)} vs --help {sorted(flags)}"
    assert flags <= in_table, f"flags missing from the README's table: {sorted(flags - in_table)}"


def test_serve_listens_on_every_interface_by_default(tmp_path, server_tmpdir):
    r = subprocess.run([str(BIN), "serve", "--help"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert re.search(r"--host <HOST>\s+Address to listen on \[default: 0\.0\.0\.0\]", r.stdout), r.stdout
    assert "`0.0.0.0`" in README

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    env["TMPDIR"] = str(server_tmpdir)
    stderr_path = tmp_path / "serve.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([str(BIN), "serve", str(EXAMPLES / "hello"), "--port", str(port)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
    server = Server(model_dir=EXAMPLES / "hello", port=port, proc=proc, stderr_path=stderr_path)
    try:
        wait_listening(server, timeout=60)
        # /proc/net/tcp: local address 00000000:<port hex> in state 0A (LISTEN) is 0.0.0.0:<port>.
        listening = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert listening == [f"00000000:{port:04X}"], listening
    finally:
        assert server.cleanup() == []


def test_make_serve_takes_the_port_and_host():
    makefile = (REPO / "Makefile").read_text()
    serve = _section(makefile, "\nserve:", "\n\n")
    assert "--port $(PORT)" in serve and "--host $(HOST)" in serve, serve
    assert "make serve PORT=" in README and "make serve HOST=127.0.0.1" in README
