"""`shiftkit demo / models / data`: what is there to train on and with."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import print_registry, say, table

commands = typer.Typer()


@commands.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="output folder"),
         epochs: int = typer.Option(10, min=0), seed: int = typer.Option(0, min=0, max=2**32 - 1),
         data_root: Optional[Path] = typer.Option(None, help="Fashion-MNIST IDX folder (default $SHIFTKIT_DATA or Debian's)")):
    """Train small_cnn on DriftFMNIST bin 0 and test it on every bin.

    Example: shiftkit demo --out runs/demo --epochs 10
    """
    from ..demo import run_demo

    report = run_demo(out, epochs=epochs, seed=seed, data_root=data_root)
    table([{"bin": k, **{m: v[m] for m in ("accuracy", "macro_f1", "auroc")}} for k, v in report["test"].items()],
          title=f"small_cnn trained on bin0 for {epochs} epochs ({report['train_seconds']:.0f}s)")
    say(f"wrote {out}/demo.json, {out}/demo_accuracy_per_bin.png, {out}/small_cnn_bin0.safetensors")


@commands.command("models")
def list_models():
    """List registered models, one line each: name and what it is.

    Example: shiftkit models
    """
    from .. import models

    print_registry(models.MODELS)


@commands.command()
def data(name: str = typer.Argument("driftfmnist", help="dataset name (see `shiftkit data --list`)"),
         root: Optional[Path] = typer.Option(None), seed: int = typer.Option(0, min=0, max=2**32 - 1),
         list_: bool = typer.Option(False, "--list", help="list dataset names")):
    """Describe a dataset: domains, split sizes, class balance, mean pixel (drift statistics).

    Example: shiftkit data driftfmnist
    """
    from ..data import DATASETS, describe, load_domains

    if list_:
        print("\n".join(DATASETS.names()))
        return
    table(describe(load_domains(name, root, seed=seed)), title=name)
