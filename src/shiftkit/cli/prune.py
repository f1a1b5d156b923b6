"""`shiftkit prune`: prune a checkpoint, fine-tune with fixed masks, save the sparse model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import device_option, from_flags, json_line, precision_option, table

commands = typer.Typer()


@commands.command("prune")
def prune_cmd(
    checkpoint: Path = typer.Argument(..., help="dense safetensors checkpoint (shiftkit train)"),
    method: str = typer.Option("gcnet", help="criterion: gcnet, magnitude, kernel_l1, random, snip, synflow; with "
                               "--structured a channel importance: gcnet, gcnet_hybrid, l1, l2, taylor, lamp, random"),
    sparsity: float = typer.Option(0.9, help="fraction of prunable weights removed, in [0, 1) (masks)"),
    structured: bool = typer.Option(False, "--structured", help="remove whole channels (torch-pruning): a smaller, "
                                    "faster model instead of masks; needs --speedup or --channel-sparsity"),
    speedup: Optional[float] = typer.Option(None, help="structured: FLOP reduction to reach, > 1 (e.g. 2.0)"),
    channel_sparsity: Optional[float] = typer.Option(None, help="structured: fraction of channels removed, in (0, 1)"),
    scope: str = typer.Option("global", help="global | layerwise threshold"),
    hybrid_split: Optional[int] = typer.Option(None, help="gcnet: magnitude on the first k prunable layers"),
    reading: Optional[str] = typer.Option(None, help="gcnet: input | parent connectivity reading"),
    combine: Optional[bool] = typer.Option(None, "--combine", help="gcnet: score |W| x conn"),
    inverse: Optional[bool] = typer.Option(None, "--inverse", help="gcnet control: prune the most connected first"),
    granularity: Optional[str] = typer.Option(None, help="random: element | connection"),
    calib_per_class: Optional[int] = typer.Option(None, help="gcnet: calibration images per class (default 100)"),
    keep_first: bool = typer.Option(True, help="keep the first prunable layer dense (every benchmark does)"),
    keep_last: bool = typer.Option(True, help="keep the classifier dense (every benchmark does)"),
    max_layer_sparsity: float = typer.Option(1.0, help="cap on any layer's sparsity"),
    skip_unsupported: bool = typer.Option(False, help="leave modules shiftkit cannot prune dense instead of failing"),
    dataset: str = typer.Option("driftfmnist", help="dataset name (shiftkit data --list); every domain is tested"),
    root: Optional[Path] = typer.Option(None, help="data folder (default $SHIFTKIT_DATA)"),
    domain: int = typer.Option(0, help="domain to fine-tune on"),
    calib_domain: Optional[int] = typer.Option(None, help="domain whose train split calibrates (a shifted bin); default --domain"),
    steps: int = typer.Option(1, help="iterative pruning rounds (prune -> fine-tune -> prune more)"),
    bn_recalibrate: bool = typer.Option(False, help="re-estimate BN statistics on the calibration data after pruning"),
    finetune_epochs: int = typer.Option(2, help="fine-tuning epochs after pruning (and between rounds)"),
    lr: float = typer.Option(1e-3), batch_size: int = typer.Option(128), seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/pruned.safetensors"), help="sparse safetensors output"),
    device: Optional[str] = device_option(), precision: Optional[str] = precision_option(),
):
    """Prune a checkpoint, fine-tune with fixed masks, save the sparse model and its per-layer sparsity;
    test on every domain (results: <out without .safetensors>/result.json, or <out>.results/ for other names).

    Example: shiftkit prune runs/m.safetensors --method gcnet --sparsity 0.9 --hybrid-split 2 --dataset driftfmnist --finetune-epochs 2 --out runs/p.safetensors

    Example (channels removed, 2x fewer FLOPs): shiftkit prune runs/m.safetensors --structured --speedup 2.0 --method l2 --out runs/s.safetensors
    """
    from .. import prune
    from ..experiment import run_experiment

    prune.check_fraction(sparsity, "--sparsity")
    if structured:  # mask-only flags at their defaults do not apply (the classifier always stays whole)
        keep_last = None if keep_last else False  # --no-keep-last stays and is refused as an option
        skip_unsupported = skip_unsupported or None
        max_layer_sparsity = None if max_layer_sparsity == 1.0 else max_layer_sparsity
    exp = from_flags("prune", checkpoint=checkpoint, method=method, sparsity=sparsity, scope=scope,
                     structured=structured or None, speedup=speedup, channel_sparsity=channel_sparsity,
                     hybrid_split=hybrid_split, reading=reading, combine=combine, inverse=inverse,
                     granularity=granularity, calib_per_class=calib_per_class, keep_first=keep_first,
                     keep_last=keep_last, max_layer_sparsity=max_layer_sparsity, skip_unsupported=skip_unsupported,
                     dataset=dataset, root=root, domain=domain, calib_domain=calib_domain, steps=steps,
                     bn_recalibrate=bn_recalibrate, finetune_epochs=finetune_epochs, lr=lr, batch_size=batch_size,
                     seed=seed, out=out, device=device, precision=precision)
    r = run_experiment(exp)
    if structured:
        table([{"layer": k, "out x in channels": f"{o} x {i}"} for k, (o, i) in r["widths"].items()],
              title=f"{method}: {r['speedup']:.2f}x fewer MACs, {r['params'][1] / r['params'][0]:.2f} of the parameters")
        json_line({"checkpoint": r["checkpoint"], "speedup": r["speedup"], "macs": r["macs"], "params": r["params"],
                   "test": r["test"], "shifted_mean": r.get("shifted_mean"), "result": str(Path(exp.out) / "result.json")})
        return
    table(r["layers"], title=f"{method} @ {sparsity}: true sparsity {r['true_sparsity']:.4f}")
    json_line({"checkpoint": r["checkpoint"], "sparsity": r["true_sparsity"], "test": r["test"],
               "shifted_mean": r.get("shifted_mean"), "result": str(Path(exp.out) / "result.json")})
