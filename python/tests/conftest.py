import os
import sys

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)


from typing import Any, Iterator  # noqa: E402

import pytest  # noqa: E402


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
