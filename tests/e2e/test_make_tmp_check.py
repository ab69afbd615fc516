"""`make test` ends with `check-tmp`: it fails, naming them, when the system temp dir gained entries since
the listing taken at the start, and passes when it did not."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import REPO


def _check(tmp_path, system_tmp) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "check-tmp", f"SYSTEM_TMP={system_tmp}",
         f"TMP_BEFORE={tmp_path / 'before.txt'}", f"TMP_AFTER={tmp_path / 'after.txt'}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_check_tmp_fails_on_a_new_entry_and_passes_without(tmp_path):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    (system_tmp / "was-there").write_text("")
    (tmp_path / "before.txt").write_text("was-there\n")

    r = _check(tmp_path, system_tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "left nothing" in r.stdout

    (system_tmp / "cogvisor-leaked").mkdir()
    r = _check(tmp_path, system_tmp)
    assert r.returncode != 0, r.stdout
    assert "cogvisor-leaked" in r.stdout and "was-there" not in r.stdout, r.stdout
