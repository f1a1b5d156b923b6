"""The `shiftkit` typer app: the root options and the table of command groups.

Layers (each imports only the ones below it): app.py -> one module per command group (data, train,
transfer, prune, experiments, bench) -> _common.py (console, safe printing, tables, flags, errors)
-> the library.
"""
from __future__ import annotations

import os
import sys

from typing import Optional

import typer

from . import bench, data, experiments, prune, train, transfer
from ._common import run_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Image classifiers that survive distribution shift.")
for group in (data, train, transfer, prune, experiments):
    app.add_typer(group.commands)
app.add_typer(bench.commands, name="bench")


def _version(show: bool) -> None:
    if show:
        from .. import __version__

        print(f"shiftkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(threads: Optional[int] = typer.Option(
              None, min=0, help="torch CPU threads. Default: $OMP_NUM_THREADS when set, else 1 (on a busy machine "
                                "more threads than free cores made training up to 12x slower; README 'Threads'); "
                                "0 = torch's default (one per core), fastest only on an idle machine"),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """Image classifiers that survive distribution shift: GRASP merging and GC-Net pruning."""
    if threads is None:
        threads = 0 if os.environ.get("OMP_NUM_THREADS") else 1  # the user's environment wins over our default
    if threads:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        else:  # torch reads these when a command imports it; --help and usage errors never pay for torch
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def main(argv: list[str] | None = None) -> None:
    """Entry point (`shiftkit` console script, `python -m shiftkit`): user errors -> one line, exit 2."""
    run_app(app, argv)
