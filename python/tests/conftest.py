import os
import sys

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)


from typing import Any, Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_tmpdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporary files of the code under test, and of the workers the tests start, go into a directory
    of pytest's own (beside the test's tmp_path, which some tests check is empty): nothing is left in the
    system temp dir (a failed download's file, say)."""
    import tempfile

    private = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))


@pytest.fixture
def start_ready() -> Iterator[Any]:
    """Starts fake-supervisor sessions (``harness.Supervisor``) that have sent ``ready``; closes them after."""
    from harness import Supervisor

    made: list[Supervisor] = []

    def make(files: dict[str, str], **kw: Any) -> Supervisor:
        sup = Supervisor(files, **kw)
        made.append(sup)
        msg = sup.ready()
        assert msg["type"] == "ready", msg
        return sup

    yield make
    for sup in made:
        sup.close()
