"""`shiftkit` commands for prune (registered on the main typer app)."""
from __future__ import annotations

from .cli import app  # noqa: F401  (commands below attach to it)
