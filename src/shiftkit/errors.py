"""Exception types. Every error shiftkit raises on bad input is a ShiftkitError
whose message names the offending file, tensor or option."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["ShiftkitError", "DataError", "CheckpointError", "ConfigError", "DivergedError", "suggest"]


class ShiftkitError(Exception):
    """Base class: bad input a user can fix. The CLI prints these as one line."""


class DataError(ShiftkitError, ValueError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class CheckpointError(ShiftkitError, ValueError):
    """A checkpoint does not match the model, is corrupt, or holds NaN/Inf."""


class ConfigError(ShiftkitError, ValueError):
    """An option, method name or config key is invalid."""


class DivergedError(ShiftkitError, ArithmeticError):
    """A run's loss or weights became NaN/Inf (e.g. a learning rate far too high): no result is saved."""


def suggest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to a misspelled one (difflib), or None when nothing is close."""
    hits = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return hits[0] if hits else None
