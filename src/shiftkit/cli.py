"""`shiftkit` command line. Thin: parses options, calls the library, prints results.

Errors a user can fix (ShiftkitError) print as one line and exit 2, no traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import ConfigError, ShiftkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Image classifiers that survive distribution shift.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: write JSON to benchmarks/results/ and update benchmarks/RESULTS.md.")
app.add_typer(bench_app, name="bench")
console = Console()


@app.callback()
def _root(threads: int = typer.Option(0, help="torch CPU threads; 0 keeps torch's default (one per physical core)")):
    """Image classifiers that survive distribution shift: GRASP merging and GC-Net pruning."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def pick(domains: list, index: int, option: str):
    """domains[index], or a ConfigError naming the option and the valid range."""
    if not -len(domains) <= index < len(domains):
        raise ConfigError(f"{option}={index} is out of range: the dataset has {len(domains)} domain(s), "
                          f"0..{len(domains) - 1} ({', '.join(d.name for d in domains)})")
    return domains[index]


def _table(rows: list[dict], title: str = "") -> None:
    if not rows:
        return
    t = Table(title=title)
    for k in rows[0]:
        t.add_column(str(k))
    for r in rows:
        t.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()])
    console.print(t)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="output folder"),
         epochs: int = typer.Option(10), seed: int = typer.Option(0),
         data_root: Optional[Path] = typer.Option(None, help="Fashion-MNIST IDX folder (default $SHIFTKIT_DATA or Debian's)")):
    """Train small_cnn on DriftFMNIST bin 0 and test it on every bin.

    Example: shiftkit demo --out runs/demo --epochs 10
    """
    from .demo import run_demo

    report = run_demo(out, epochs=epochs, seed=seed, data_root=data_root)
    _table([{"bin": k, **{m: v[m] for m in ("accuracy", "macro_f1", "auroc")}} for k, v in report["test"].items()],
           title=f"small_cnn trained on bin0 for {epochs} epochs ({report['train_seconds']:.0f}s)")
    console.print(f"wrote {out}/demo.json, {out}/demo_accuracy_per_bin.png, {out}/small_cnn_bin0.safetensors")


@app.command("models")
def list_models():
    """List registered model names.

    Example: shiftkit models
    """
    from . import models

    for name in models.names():
        print(name)


@app.command()
def data(name: str = typer.Argument("driftfmnist", help="dataset name (see `shiftkit data --list`)"),
         root: Optional[Path] = typer.Option(None), seed: int = typer.Option(0),
         list_: bool = typer.Option(False, "--list", help="list dataset names")):
    """Describe a dataset: domains, split sizes, class balance, mean pixel (drift statistics).

    Example: shiftkit data driftfmnist
    """
    from .data import DATASETS, describe, load_domains

    if list_:
        print("\n".join(DATASETS.names()))
        return
    _table(describe(load_domains(name, root, seed=seed)), title=name)


@app.command()
def train(model: str = typer.Option("small_cnn"), dataset: str = typer.Option("driftfmnist"),
          domain: int = typer.Option(0, help="domain index to train on"), epochs: int = typer.Option(5),
          lr: float = typer.Option(1e-3), batch_size: int = typer.Option(128), seed: int = typer.Option(0),
          root: Optional[Path] = typer.Option(None), out: Path = typer.Option(Path("runs/model.safetensors"))):
    """Train a model on one domain and save it as safetensors.

    Example: shiftkit train --model small_cnn --dataset driftfmnist --domain 0 --epochs 3 --out runs/m.safetensors
    """
    from . import models as zoo
    from .checkpoints import save_checkpoint
    from .data import load_domains
    from .train import TrainConfig, evaluate, fit

    domains = load_domains(dataset, root, seed=seed)
    d = pick(domains, domain, "--domain")
    net = zoo.create(model, num_classes=len(d.classes), in_chans=d.train.shape[0])
    fit(net, d.train, d.val, TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
    save_checkpoint(out, net, metadata={"domain": d.name, "dataset": dataset})
    print(json.dumps({"domain": d.name, "test": evaluate(net, d.test), "checkpoint": str(out)}))


@app.command("eval")
def eval_(checkpoint: Path, dataset: str = typer.Option("driftfmnist"), root: Optional[Path] = typer.Option(None),
          seed: int = typer.Option(0), corruptions: bool = typer.Option(False, help="also the corruption sets (5 severities)"),
          adapt_bn: bool = typer.Option(False, help="AdaBN: re-estimate BN statistics on each test set's images first")):
    """Evaluate a checkpoint on every domain's test set (and optionally on corruptions).

    Example: shiftkit eval runs/m.safetensors --dataset driftfmnist --adapt-bn
    """
    from . import train
    from .checkpoints import load_checkpoint, model_from_checkpoint
    from .data import corruption_sets, load_domains
    from .train import evaluate

    net = model_from_checkpoint(checkpoint, default_arch="small_cnn")
    load_checkpoint(checkpoint, net)
    domains = load_domains(dataset, root, seed=seed)
    sets = {d.name: d.test for d in domains}
    if corruptions:
        sets.update({f"{name}@{sev}": ds for (name, sev), ds in corruption_sets(domains[0].test).items()})
    rows = []
    for name, ds in sets.items():
        m = train.adapt_bn(net, ds) if adapt_bn else net  # a fresh copy per set: statistics never leak across sets
        rows.append({"set": name, **{k: v for k, v in evaluate(m, ds).items() if k != "loss"}})
    _table(rows, title=f"{checkpoint}{' (AdaBN per set)' if adapt_bn else ''}")


@bench_app.command("train-speed")
def bench_train_speed(model: str = typer.Option("small_cnn"), epochs: int = typer.Option(2), repeats: int = typer.Option(3),
                      threads: int = typer.Option(2), root: Optional[Path] = typer.Option(None),
                      out: Path = typer.Option(Path("benchmarks/results/train_speed.json"))):
    """Training-loop time of shiftkit's fit() vs a bare PyTorch loop (target ratio <= 1.3).

    Example: shiftkit bench train-speed --model small_cnn --epochs 2 --repeats 3
    """
    import torch

    from .bench import _results, train_speed

    torch.set_num_threads(threads)
    r = train_speed.run(model=model, epochs=epochs, repeats=repeats, root=root)
    r["command"] = _results.command_line()
    _results.write_result(out, r)
    body = (f"## Training loop overhead\n\n`{r['command']}`\n\n"
            "| model | images/run | threads | bare loop img/s | fit() img/s | fit / bare time (target <= 1.3) |\n|---|---|---|---|---|---|\n"
            f"| {model} | {r['images']} | {r['threads']} | {r['img_per_s']['bare']:.0f} | {r['img_per_s']['fit']:.0f} | "
            f"{r['ratio_fit_over_bare']:.3f} |\n\nBest of {repeats} interleaved runs each; fit() without validation "
            "(its best-val copy and evaluation are extra work a bare loop does not do).")
    _results.update_section("train-speed", body)
    console.print(body)


# Command groups that live beside their packages; imported last so `app` exists.
from . import _cli_prune, _cli_reliability, _cli_transfer, _cli_ux  # noqa: E402,F401


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: ShiftkitError and usage errors -> one readable line on stderr, exit code 2;
    warnings print as one line each."""
    import warnings

    fmt = warnings.formatwarning
    warnings.formatwarning = lambda msg, cat, *_a, **_k: f"shiftkit: warning: {_one_line(msg)} ({cat.__name__})\n"
    try:
        _main(argv)
    finally:
        warnings.formatwarning = fmt


def _main(argv: list[str] | None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except ShiftkitError as e:
        print(f"shiftkit: error: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        import click

        # typer >= 0.24 vendors click: its usage errors are typer.TyperException, not click's
        if isinstance(e, (click.exceptions.ClickException, typer.TyperException)) and hasattr(e, "exit_code"):
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(f"shiftkit: error: {_one_line(e.format_message())}{hint}", file=sys.stderr)
            sys.exit(e.exit_code)
        if isinstance(e, (click.exceptions.Abort, typer.Abort)):
            sys.exit(1)
        raise
