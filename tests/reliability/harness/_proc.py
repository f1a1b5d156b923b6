"""Child processes of the harness: the same interpreter, the same shiftkit and this package importable."""
from __future__ import annotations

import os
import sys

__all__ = ["PACKAGE", "child_env"]

PACKAGE = __package__  # "harness" under pytest, "tests.reliability.harness" under `python -m`


def child_env(**extra: str) -> dict[str, str]:
    """os.environ with PYTHONPATH = this process's sys.path, so `python -c "from PACKAGE..."` resolves
    the modules this process sees (a worktree's src/, the harness) and not another installed copy."""
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return {**os.environ, "PYTHONPATH": path, **extra}
