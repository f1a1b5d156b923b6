"""Exception types. Every error shiftkit raises on bad input is a ShiftkitError
whose message names the offending file, tensor or option."""

__all__ = ["ShiftkitError", "DataError", "CheckpointError", "ConfigError"]


class ShiftkitError(Exception):
    """Base class: bad input a user can fix. The CLI prints these as one line."""


class DataError(ShiftkitError, ValueError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class CheckpointError(ShiftkitError, ValueError):
    """A checkpoint does not match the model, is corrupt, or holds NaN/Inf."""


class ConfigError(ShiftkitError, ValueError):
    """An option, method name or config key is invalid."""
