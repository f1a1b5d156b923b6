"""`shiftkit sources / transfer / transfer-methods`: build a source zoo, merge it into a target model."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import device_option, from_flags, precision_option, print_registry, say, table

commands = typer.Typer()


@commands.command()
def sources(dataset: str = typer.Option("driftfmnist"), model: str = typer.Option("small_cnn"),
            target: Optional[int] = typer.Option(None, help="domain left out (the transfer target; -1: the last)"),
            out: Path = typer.Option(Path("runs/zoo")), base_domain: int = typer.Option(0),
            base_epochs: int = typer.Option(5), source_epochs: int = typer.Option(3),
            base_lr: float = typer.Option(1e-3, help="base pretraining learning rate"),
            source_lr: float = typer.Option(5e-4, help="per-source fine-tuning learning rate"),
            zoo_batch_size: int = typer.Option(128, "--batch-size", help="zoo training batch size (small domains: 32)"),
            width: Optional[int] = typer.Option(None, help="model width option (small_cnn / resnet)"),
            base: Optional[Path] = typer.Option(None, help="pretrained base file (shiftkit, timm or torchvision): "
                                                           "every source is fine-tuned from it, no base is trained"),
            augment: Optional[str] = typer.Option(None, help="training augmentation: none, flip, crop_flip"),
            seed: int = typer.Option(0), root: Optional[Path] = typer.Option(None),
            device: Optional[str] = device_option(), precision: Optional[str] = precision_option()):
    """Build a source zoo: pretrain a shared base on one domain (or take --base), fine-tune one source per domain.

    Example: shiftkit sources --dataset driftfmnist --model small_cnn --target 7 --out runs/zoo
    """
    from ..experiment import prepare, zoo_path
    from ..transfer.zoo import check_pretrained_file, quick_report

    exp = from_flags("sources", dataset=dataset, model=model, target=target, out=out, base_domain=base_domain,
                     base_epochs=base_epochs, source_epochs=source_epochs, base_lr=base_lr, source_lr=source_lr,
                     zoo_batch_size=zoo_batch_size, width=width, base=base, augment=augment, seed=seed, root=root,
                     device=device, precision=precision)
    if base:
        check_pretrained_file(base)  # before the data loads
    domains = exp.data.load()
    prepare(exp, domains, exclude=None if target is not None else (), strict=True)  # no --target: every domain
    table(quick_report(domains, zoo_path(exp)), title=f"zoo {out} (base {base or 'on ' + domains[base_domain].name})")


@commands.command("transfer-methods")
def transfer_methods():
    """List registered transfer methods, one line each: name and what it is (baselines, variants).

    Example: shiftkit transfer-methods
    """
    from .. import transfer

    print_registry(transfer.TRANSFER)


@commands.command()
def transfer(method: str = typer.Option("grasp", help="see `shiftkit transfer-methods`"),
             dataset: str = typer.Option("driftfmnist"), target: int = typer.Option(..., help="target domain index (-1: the last)"),
             sources: Path = typer.Option(Path("runs/zoo"), help="zoo folder from `shiftkit sources`"),
             out: Path = typer.Option(Path("runs/transfer")), few_shot: Optional[int] = typer.Option(None),
             tau: Optional[float] = typer.Option(None), seed: int = typer.Option(0),
             resume: bool = typer.Option(False, help="continue the run in --out"),
             set_: List[str] = typer.Option([], "--set", help="method option key=value (repeatable)"),
             root: Optional[Path] = typer.Option(None),
             device: Optional[str] = device_option(), precision: Optional[str] = precision_option()):
    """Merge the zoo's sources into a model for the target domain, one source at a time.

    Example: shiftkit transfer --method grasp --dataset driftfmnist --target 7 --sources runs/zoo --out runs/t --few-shot 100
    """
    from ..experiment import run_experiment
    from ..transfer import zoo_sources

    exp = from_flags("transfer", method=method, dataset=dataset, target=target, sources=sources, out=out,
                     few_shot=few_shot, tau=tau, seed=seed, resume=resume, set_=set_, root=root, device=device,
                     precision=precision)
    zoo_sources(sources)  # transfer merges an existing zoo (`shiftkit sources` builds one): no zoo.json -> error
    r = run_experiment(exp)
    table([{"source": Path(rec["source"]).name, "skipped": rec.get("skipped", False),
            "fraction": rec.get("fraction_transferred", ""),
            "val_after": (rec.get("val_after") or {}).get("accuracy", "")} for rec in r["records"]],
          title=f"{method} -> {r['target']}")
    test = r["test"]
    bad = f"INVALID (NaN/Inf logits on {', '.join(r['invalid_scores'])}) " if r.get("invalid_scores") else ""
    say(f"{bad}test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  AUROC {test['auroc']:.4f}; wrote {out}")
