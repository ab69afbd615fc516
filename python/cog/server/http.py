"""`python -m cog.server.http`: Cog's launcher command, starting cogvisor instead of coglet.

A Cog-built image runs `python -m cog.server.http [flags]` in the model directory. This module accepts
Cog's flags, translates them to `cogvisor serve` flags and replaces itself (``os.execv``) with the
cogvisor binary, so the image can switch runtime without changing its command. The binary is
``$COGVISOR_BIN`` when set, else the one the ``cogvisor`` wheel installed beside this package (see
`installed_binaries`), else ``cogvisor`` on ``PATH``. Flags cogvisor has no use for are ignored with a
warning. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TRUE_VALUES = frozenset({"true", "1", "yes", "on", "t", "y"})
FALSE_VALUES = frozenset({"false", "0", "no", "off", "f", "n", ""})


class LauncherError(Exception):
    """The launcher cannot start cogvisor; the message says why."""


@dataclass
class Translation:
    """What to run: cogvisor's arguments (after the binary), and warnings about ignored flags."""

    args: list[str]
    warnings: list[str] = field(default_factory=list)
    version: bool = False


def parse_bool(value: str) -> bool:
    """A boolean flag value: true/1/yes/on or false/0/no/off (case-insensitive)."""
    v = value.strip().lower()
    if v in TRUE_VALUES:
        return True
    if v in FALSE_VALUES:
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean (use true or false)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cog.server.http",
        description="Start cogvisor with Cog's launcher flags.",
        allow_abbrev=False,
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default: $PORT, else 5000)")
    p.add_argument("--threads", type=int, default=None, help="accepted for Cog compatibility; ignored")
    p.add_argument("--upload-url", default=None, help="PUT file outputs to this URL")
    p.add_argument(
        "--await-explicit-shutdown",
        nargs="?",
        const=True,
        default=False,
        type=parse_bool,
        help="ignore SIGTERM; stop only on POST /shutdown or SIGINT",
    )
    p.add_argument("--x-mode", choices=("predict", "train"), default="predict", help="predict or train")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p


def translate(argv: Sequence[str], python: str | None = None) -> Translation:
    """Cog launcher flags → `cogvisor serve` arguments. Raises SystemExit (argparse) on a bad value."""
    ns, unknown = _parser().parse_known_args(list(argv))
    warnings = [f"ignoring unknown option {u!r}" for u in unknown]
    if ns.version:
        return Translation(args=["--version"], warnings=warnings, version=True)
    args = ["serve", ".", "--host", ns.host]
    if ns.port is not None:
        args += ["--port", str(ns.port)]
    if ns.upload_url:
        args += ["--upload-url", ns.upload_url]
    args += ["--await-explicit-shutdown", "true" if ns.await_explicit_shutdown else "false"]
    args += ["--mode", ns.x_mode]
    if python:
        args += ["--python", python]
    return Translation(args=args, warnings=warnings)


def installed_binaries() -> list[Path]:
    """Where the `cogvisor` wheel puts the binary, for the installs that carry this launcher.

    ``pip install --target DIR`` puts the package in ``DIR/cog`` and the binary in ``DIR/bin``; an install
    into an environment (a venv, the system, ``--prefix``) puts it in that environment's scripts directory
    (``sys.prefix/bin`` in a venv), which need not be on ``PATH`` (a venv's Python run without activating
    the venv). A ``pip install --user`` binary is in ``~/.local/bin``, found on ``PATH``.
    """
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "bin" / "cogvisor"]
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(Path(scripts) / "cogvisor")
    return candidates


def _executable(path: Path | str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_binary(environ: Mapping[str, str], installed: Sequence[Path] | None = None) -> str:
    """The cogvisor binary: $COGVISOR_BIN, else the one installed with this launcher (`installed`,
    default `installed_binaries()`), else `cogvisor` on PATH."""
    explicit = environ.get("COGVISOR_BIN")
    if explicit:
        if _executable(explicit):
            return explicit
        raise LauncherError(f"COGVISOR_BIN={explicit!r} is not an executable file")
    for candidate in installed_binaries() if installed is None else installed:
        if _executable(candidate):
            return str(candidate)
    found = shutil.which("cogvisor", path=environ.get("PATH"))
    if found:
        return found
    raise LauncherError(
        "cogvisor binary not found: set COGVISOR_BIN, install the cogvisor wheel into this Python "
        "(pip install cogvisor-*.whl) or put `cogvisor` on PATH"
    )


def main(argv: Sequence[str] | None = None) -> int:
    t = translate(sys.argv[1:] if argv is None else argv, python=sys.executable or None)
    for w in t.warnings:
        print(f"cog.server.http: warning: {w}", file=sys.stderr)
    try:
        binary = find_binary(os.environ)
    except LauncherError as e:
        print(f"cog.server.http: error: {e}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(binary, [binary, *t.args])
    except OSError as e:
        print(f"cog.server.http: error: cannot run {binary}: {e}", file=sys.stderr)
        return 1
    return 0  # not reached: execv replaced the process


if __name__ == "__main__":
    sys.exit(main())
