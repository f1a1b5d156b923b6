"""`shiftkit sources / transfer / transfer-methods`: build a source zoo, merge it into a target model."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from ._common import say, table

commands = typer.Typer()


def _parse_sets(pairs: list[str]) -> dict:
    """["tau=0.5", "granularity=channel"] -> {"tau": 0.5, "granularity": "channel"} (JSON values, else strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@commands.command()
def sources(dataset: str = typer.Option("driftfmnist"), model: str = typer.Option("small_cnn"),
            target: Optional[int] = typer.Option(None, help="domain left out (the transfer target)"),
            out: Path = typer.Option(Path("runs/zoo")), base_domain: int = typer.Option(0),
            base_epochs: int = typer.Option(5), source_epochs: int = typer.Option(3),
            width: Optional[int] = typer.Option(None, help="model width option (small_cnn / resnet)"),
            seed: int = typer.Option(0), root: Optional[Path] = typer.Option(None)):
    """Build a source zoo: pretrain a shared base on one domain, fine-tune one source per other domain.

    Example: shiftkit sources --dataset driftfmnist --model small_cnn --target 7 --out runs/zoo
    """
    from ..data import load_domains
    from ..transfer.zoo import ZooConfig, build_zoo, quick_report

    domains = load_domains(dataset, root, seed=seed)
    cfg = ZooConfig(model=model, model_kwargs={"width": width} if width else {}, base_domain=base_domain,
                    base_epochs=base_epochs, source_epochs=source_epochs, seed=seed)
    build_zoo(domains, out, cfg=cfg, dataset=dataset, exclude=() if target is None else (target,))
    table(quick_report(domains, out), title=f"zoo {out} (base on {domains[base_domain].name})")


@commands.command("transfer-methods")
def transfer_methods():
    """List registered transfer methods.

    Example: shiftkit transfer-methods
    """
    from .. import transfer as tr

    print("\n".join(tr.names()))


@commands.command()
def transfer(method: str = typer.Option("grasp", help="see `shiftkit transfer-methods`"),
             dataset: str = typer.Option("driftfmnist"), target: int = typer.Option(..., help="target domain index"),
             sources: Path = typer.Option(Path("runs/zoo"), help="zoo folder from `shiftkit sources`"),
             out: Path = typer.Option(Path("runs/transfer")), few_shot: Optional[int] = typer.Option(None),
             tau: Optional[float] = typer.Option(None), seed: int = typer.Option(0),
             resume: bool = typer.Option(False, help="continue the run in --out"),
             set_: List[str] = typer.Option([], "--set", help="method option key=value (repeatable)"),
             root: Optional[Path] = typer.Option(None)):
    """Merge the zoo's sources into a model for the target domain, one source at a time.

    Example: shiftkit transfer --method grasp --dataset driftfmnist --target 7 --sources runs/zoo --out runs/t --few-shot 100
    """
    from .. import transfer as tr
    from ..checkpoints import atomic_write_json, model_from_checkpoint, save_checkpoint
    from ..data import domain_index, few_shot as cap, load_domains
    from ..train import evaluate

    fields = {f.name for f in dataclasses.fields(tr.config_class(method))}  # unknown method: lists valid names
    base, paths = tr.zoo_sources(sources, exclude=(target,))
    domains = load_domains(dataset, root, seed=0)
    domain = domains[domain_index(domains, target, "--target")]
    domain = cap(domain, few_shot, seed=seed) if few_shot else domain
    cfg = {"seed": seed, "progress": True, **_parse_sets(set_), **({} if tau is None else {"tau": tau})}
    if "base" in fields:
        cfg.setdefault("base", str(base))
    net = model_from_checkpoint(base)
    merger = tr.create(method, net, domain, run_dir=out, **cfg)
    model = tr.run_sources(merger, paths, resume=resume)
    test = evaluate(model, domain.test)
    if hasattr(model, "shiftkit_arch"):
        save_checkpoint(out / "model.safetensors", model, metadata={"domain": domain.name, "method": method})
    atomic_write_json(out / "result.json", {"method": method, "target": domain.name, "test": test,
                                            "records": merger.records, "finish": merger.finish_log})
    table([{"source": Path(r["source"]).name, "skipped": r.get("skipped", False),
             "fraction": r.get("fraction_transferred", ""), "val_after": (r.get("val_after") or {}).get("accuracy", "")}
            for r in merger.records], title=f"{method} -> {domain.name}")
    say(f"test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  AUROC {test['auroc']:.4f}; wrote {out}")
