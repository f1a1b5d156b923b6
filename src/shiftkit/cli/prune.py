"""`shiftkit prune`: prune a checkpoint, fine-tune with fixed masks, save the sparse model."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from ._common import json_line, table

commands = typer.Typer()


def _criterion_options(**opts) -> dict:
    """Common options always; method-specific ones only when given (criteria reject unknown options)."""
    common = ("scope", "keep_first", "keep_last", "max_layer_sparsity", "skip_unsupported", "seed")
    return {k: v for k, v in opts.items() if k in common or v is not None}


@commands.command("prune")
def prune_cmd(
    checkpoint: Path = typer.Argument(..., help="dense safetensors checkpoint (shiftkit train)"),
    method: str = typer.Option("gcnet", help="criterion: gcnet, magnitude, kernel_l1, random, snip, synflow"),
    sparsity: float = typer.Option(0.9, help="fraction of prunable weights removed, in [0, 1)"),
    scope: str = typer.Option("global", help="global | layerwise threshold"),
    hybrid_split: Optional[int] = typer.Option(None, help="gcnet: magnitude on the first k prunable layers"),
    reading: Optional[str] = typer.Option(None, help="gcnet: input | parent connectivity reading"),
    combine: Optional[bool] = typer.Option(None, "--combine", help="gcnet: score |W| x conn"),
    inverse: Optional[bool] = typer.Option(None, "--inverse", help="gcnet control: prune the most connected first"),
    granularity: Optional[str] = typer.Option(None, help="random: element | connection"),
    calib_per_class: Optional[int] = typer.Option(None, help="gcnet: calibration images per class (default 100)"),
    keep_first: bool = typer.Option(False, help="keep the first prunable layer dense"),
    keep_last: bool = typer.Option(False, help="keep the last prunable layer dense"),
    max_layer_sparsity: float = typer.Option(1.0, help="cap on any layer's sparsity"),
    skip_unsupported: bool = typer.Option(False, help="leave modules shiftkit cannot prune dense instead of failing"),
    dataset: str = typer.Option("fashion_mnist", help="dataset name (shiftkit data --list)"),
    root: Optional[Path] = typer.Option(None, help="data folder (default $SHIFTKIT_DATA)"),
    domain: int = typer.Option(0, help="domain to fine-tune on"),
    calib_domain: Optional[int] = typer.Option(None, help="domain whose train split calibrates (a shifted bin); default --domain"),
    steps: int = typer.Option(1, help="iterative pruning rounds (prune -> fine-tune -> prune more)"),
    bn_recalibrate: bool = typer.Option(False, help="re-estimate BN statistics on the calibration data after pruning"),
    finetune_epochs: int = typer.Option(2, help="fine-tuning epochs after pruning (and between rounds)"),
    lr: float = typer.Option(1e-3), batch_size: int = typer.Option(128), seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/pruned.safetensors"), help="sparse safetensors output"),
):
    """Prune a checkpoint, fine-tune with fixed masks, save the sparse model and its per-layer sparsity.

    Example: shiftkit prune runs/m.safetensors --method gcnet --sparsity 0.9 --hybrid-split 2 --dataset fashion_mnist --finetune-epochs 2 --out runs/p.safetensors
    """
    from .. import prune
    from ..checkpoints import load_checkpoint, model_from_checkpoint
    from ..data import domain_index, load_domains
    from ..train import TrainConfig, evaluate, fit, recalibrate_bn

    prune.check_fraction(sparsity, "--sparsity")
    crit = prune.create(method, **_criterion_options(
        scope=scope, keep_first=keep_first, keep_last=keep_last, max_layer_sparsity=max_layer_sparsity,
        skip_unsupported=skip_unsupported, seed=seed, hybrid_split=hybrid_split, reading=reading, combine=combine,
        inverse=inverse, granularity=granularity, calib_per_class=calib_per_class))
    net = model_from_checkpoint(checkpoint, default_arch="small_cnn")
    load_checkpoint(checkpoint, net)
    domains = load_domains(dataset, root, seed=seed)
    d = domains[domain_index(domains, domain, "--domain")]
    calib = d.train if calib_domain is None else domains[domain_index(domains, calib_domain, "--calib-domain")].train
    cfg = TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size, seed=seed)
    masks = prune.prune_model(net, crit, sparsity, data=calib, steps=steps, train=d.train, val=d.val, train_cfg=cfg)
    prune.apply(net, masks)
    if bn_recalibrate:  # the dense net's BN statistics no longer describe the pruned layers' outputs
        recalibrate_bn(net, calib)
    fit(net, d.train, d.val, cfg)
    report = prune.export(net, out, metadata={"pruned_from": str(checkpoint), "method": method, "dataset": dataset,
                                              "prune_config": json.dumps(dataclasses.asdict(crit.cfg), default=str)})
    table([{k: v for k, v in r.items() if k != "shape"} for r in report], title=f"{method} @ {sparsity}: true sparsity")
    test = {k: v for k, v in evaluate(net, d.test).items() if k != "loss"}
    json_line({"checkpoint": str(out), "sparsity": report[-1]["sparsity"], "test": test})
