"""`shiftkit train / eval`: one model on one domain, tested on every domain."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import device_option, from_flags, json_line, precision_option, say, table

commands = typer.Typer()


@commands.command()
def train(model: str = typer.Option("small_cnn"), dataset: str = typer.Option("driftfmnist"),
          domain: int = typer.Option(0, help="domain index to train on (-1: the last)"), epochs: int = typer.Option(5),
          lr: float = typer.Option(1e-3), batch_size: int = typer.Option(128), seed: int = typer.Option(0),
          root: Optional[Path] = typer.Option(None), out: Path = typer.Option(Path("runs/model.safetensors")),
          device: Optional[str] = device_option(), precision: Optional[str] = precision_option(),
          init: Optional[Path] = typer.Option(None, help="start from pretrained weights (shiftkit, timm or torchvision file)"),
          augment: Optional[str] = typer.Option(None, help="training augmentation: none, flip, crop_flip")):
    """Train a model on one domain and save it as safetensors (results: <out without .safetensors>/result.json,
    or <out>.results/ for other names).

    Example: shiftkit train --model small_cnn --dataset driftfmnist --domain 0 --epochs 3 --out runs/m.safetensors
    """
    from ..experiment import run_experiment

    exp = from_flags("train", model=model, dataset=dataset, domain=domain, epochs=epochs, lr=lr,
                     batch_size=batch_size, seed=seed, root=root, out=out, device=device, precision=precision,
                     init=init, augment=augment)
    r = run_experiment(exp)
    json_line({"domain": r["domain"], "test": r["test"], "shifted_mean": r.get("shifted_mean"),
               "checkpoint": r["checkpoint"], "result": str(Path(exp.out) / "result.json")})


@commands.command("eval")
def eval_(checkpoint: Path, dataset: str = typer.Option("driftfmnist"), root: Optional[Path] = typer.Option(None),
          seed: int = typer.Option(0, min=0, max=2**32 - 1), corruptions: bool = typer.Option(False, help="also the corruption sets (5 severities)"),
          adapt_bn: bool = typer.Option(False, help="AdaBN: re-estimate BN statistics on each test set's images first"),
          device: Optional[str] = device_option()):
    """Evaluate a checkpoint on every domain's test set (and optionally on corruptions).

    Example: shiftkit eval runs/m.safetensors --dataset driftfmnist --adapt-bn
    """
    from ..api import evaluate_under_shift, load_model

    net = load_model(checkpoint, device=device)
    metrics = evaluate_under_shift(net, dataset, root=root, corruptions=corruptions, adapt_bn=adapt_bn, seed=seed)
    from ..train import invalid_sets

    invalid = invalid_sets(metrics)
    rows = [{"set": name + (" (INVALID)" if name in invalid else ""),
             **{k: v for k, v in m.items() if k not in ("loss", "valid", "nonfinite")}} for name, m in metrics.items()]
    table(rows, title=f"{checkpoint}{' (AdaBN per set)' if adapt_bn else ''}")
    if invalid:
        say(f"scores INVALID on {', '.join(invalid)}: the model's logits are NaN/Inf there (weights too large)")
