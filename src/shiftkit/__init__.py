"""shiftkit: image classifiers that survive distribution shift.

GRASP multi-source transfer (`shiftkit.transfer`) and GC-Net connectivity
pruning (`shiftkit.prune`), on real data, against real baselines.
"""
from .errors import CheckpointError, ConfigError, DataError, ShiftkitError

__version__ = "0.1.0"
__all__ = ["__version__", "ShiftkitError", "DataError", "CheckpointError", "ConfigError"]
