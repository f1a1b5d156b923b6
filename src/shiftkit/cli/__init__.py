"""`shiftkit` command line. Thin: parses options, builds an `Experiment` or calls the library, prints.

Errors a user can fix (ShiftkitError) print as one line and exit 2, no traceback.
"""
from .app import app, main

__all__ = ["app", "main"]
