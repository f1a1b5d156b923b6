"""`shiftkit run / sweep / report / inspect / export / import`: experiments from one YAML, reports, interop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from ._common import flag_overrides, json_line, plain, say, table

commands = typer.Typer()
_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _experiment(config: Path, sets: list[str], extra: list[str]):
    from ..config import load_experiment

    overrides = flag_overrides([a for s in sets for a in ("--set", s)] + list(extra))
    return load_experiment(config, overrides=overrides)


def _summary(r: dict) -> dict:
    """One table row per result: numbers only, no wall-clock (the same run prints the same table;
    seconds are in <out>/timing.json)."""
    row = {"run": Path(r["experiment"]["out"]).name, "kind": r["kind"], "method": r["method"], "model": r["model"],
           "seed": r["seed"], "accuracy": r["test"]["accuracy"]}
    if r.get("invalid_scores"):  # NaN/Inf logits: the numbers mean nothing (result.json lists the sets)
        row["accuracy"] = f"INVALID ({r['test']['accuracy']:.4f})" if r["test"].get("valid") is False else row["accuracy"]
        row["method"] = f"{r['method']} (scores invalid on {len(r['invalid_scores'])} sets)"
    if r.get("shifted_mean") is not None:
        row["shifted_mean"] = r["shifted_mean"]
    if "true_sparsity" in r:
        row["sparsity"] = r["true_sparsity"]
    return row


@commands.command(context_settings=_EXTRA)
def run(ctx: typer.Context, config: Path = typer.Argument(..., help="experiment YAML (see examples/)"),
        set_: List[str] = typer.Option([], "--set", help="override a config key: budget.epochs=1 (repeatable)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and stop")):
    """Run one experiment from a YAML config (data, model, method, budget, out); writes <out>/result.json.

    Every flag of train / prune / transfer works here too and sets its config key (--epochs 1 is
    budget.epochs=1, --sparsity 0.5 is method.sparsity=0.5); unknown keys and wrong types are errors
    naming the key and the file.

    Example: shiftkit run examples/train.yaml --epochs 1 --out runs/exp
    """
    import yaml

    from ..experiment import run_experiment

    exp = _experiment(config, set_, ctx.args)
    if dry_run:
        print(yaml.safe_dump(exp.dump(), sort_keys=False), end="")
        return
    r = run_experiment(exp)
    table([_summary(r)], title=f"{config} -> {exp.out}/result.json")


@commands.command(context_settings=_EXTRA)
def sweep(ctx: typer.Context, config: Path = typer.Argument(..., help="experiment YAML; its grid: section is the grid"),
          grid: List[str] = typer.Option([], "--grid", help="key=v1,v2 (repeatable), e.g. method.name=grasp,fusion"),
          set_: List[str] = typer.Option([], "--set", help="override a config key for every point"),
          executor: str = typer.Option("local", help="local (sequential, default) | ray (pip install 'shiftkit\\[ray]')"),
          workers: int = typer.Option(2, min=1, help="ray: parallel points (CPUs given to Ray)"),
          threads: int = typer.Option(1, min=1, help="torch threads per point (same in both executors)"),
          gpus_per_point: float = typer.Option(0.0, "--gpus-per-point", min=0,
                                               help="ray: GPU share per point (0.25 packs four points on a GPU)"),
          report: bool = typer.Option(True, help="write report.md and plots into the sweep folder"),
          rerun: bool = typer.Option(False, help="run points again even when their result.json is there")):
    """Run a grid of experiments (method x target x seed x model ...), locally or on Ray; points already
    done (same config in <out>/<point>/result.json) are skipped, so a killed sweep continues.

    Example: shiftkit sweep examples/train.yaml --grid seed=0,1 --epochs 1 --out runs/sweep
    """
    from .._files import check_folder, check_output
    from ..config import parse_value
    from ..sweep import expand_grid, run_grid

    exp = _experiment(config, set_, ctx.args)
    extra = {}
    for g in grid:
        key, sep, values = g.partition("=")
        if not sep:
            raise ConfigError(f"--grid expects key=v1,v2, got {g!r}")
        extra[key.strip()] = [parse_value(v) for v in values.split(",")]
    check_folder(exp.out, "sweep folder (out)")
    exps = expand_grid(exp, extra)
    check_output(Path(exp.out) / "sweep.json", "sweep record")
    if report:
        check_output(Path(exp.out) / "report.md", "report")
    say(f"{len(exps)} points, executor {executor}")
    results = run_grid(exps, executor=executor, workers=workers, threads=threads, rerun=rerun,
                       gpus_per_point=gpus_per_point)
    from ..checkpoints import atomic_write_json

    atomic_write_json(Path(exp.out) / "sweep.json", {"executor": executor, "points": [e.out for e in exps]})
    table([_summary(r) for r in results], title=f"sweep {config} ({executor})")
    if report:
        from ..report import write_report

        say(f"wrote {write_report(exp.out)}")


@commands.command("report")
def report_cmd(results_dir: Path = typer.Argument(..., help="folder with JSON results (searched recursively)"),
               out: Optional[Path] = typer.Option(None, help="report folder (default: RESULTS_DIR)")):
    """Regenerate markdown tables and plots from JSON results: accuracy after each absorbed source,
    accuracy vs sparsity (clean and shifted), memory vs K.

    Example: shiftkit report runs/sweep
    """
    from ..report import write_report

    path = write_report(results_dir, out)
    print(path.read_text())  # markdown as is (rich would read ![..](..) as markup)
    say(f"wrote {path}")


@commands.command("inspect")
def inspect_cmd(checkpoint: Path = typer.Argument(..., help=".safetensors or .pt/.pth checkpoint"),
                tensors: bool = typer.Option(True, help="print the per-tensor table"),
                as_json: bool = typer.Option(False, "--json", help="print everything as JSON")):
    """Print a checkpoint's arch, metadata, tensor table (shape, dtype, sparsity) and total sparsity.

    Example: shiftkit inspect runs/m.safetensors
    """
    from ..interop import inspect_checkpoint

    info = inspect_checkpoint(checkpoint)
    if as_json:
        json_line(info)
        return
    say(f"{checkpoint}  arch: {plain(info['arch'])}")
    table([{"key": k, "value": plain(v, limit=100)} for k, v in info["metadata"].items()], title="metadata")
    if tensors:
        table([{"tensor": r["name"], "shape": "x".join(map(str, r["shape"])) or "scalar", "dtype": r["dtype"],
                 "params": r["params"], "sparsity": r["sparsity"]} for r in info["tensors"]], title="tensors")
    say(f"{len(info['tensors'])} tensors, {info['params']:,} parameters, {info['bytes'] / 2**20:.2f} MiB; "
                  f"weight sparsity {info['weight_sparsity']:.4f} over {info['weight_params']:,} weights")


@commands.command("export")
def export_cmd(checkpoint: Path = typer.Argument(..., help="shiftkit checkpoint (trained, merged or pruned)"),
               out: Path = typer.Option(..., help="plain safetensors file for timm / torch users")):
    """Export a model as a plain safetensors state dict (pruning masks folded in) that loads without shiftkit.

    Example: shiftkit export runs/m.safetensors --out runs/m_plain.safetensors
    """
    from .._files import check_output
    from ..interop import export_checkpoint

    check_output(out, "export file")
    r = export_checkpoint(checkpoint, out)
    say(f"wrote {r['out']} ({r['tensors']} tensors, arch {r['arch'] or '?'}); load it with\n"
        f"  from safetensors.torch import load_file; model.load_state_dict(load_file({str(out)!r}))")


@commands.command("import")
def import_cmd(source: Path = typer.Argument(..., help=".pt/.pth/.bin (weights_only) or foreign .safetensors"),
               arch: str = typer.Option(..., help="registered model name (shiftkit models)"),
               num_classes: int = typer.Option(10, min=1), in_chans: int = typer.Option(3, min=1),
               skip_mismatched: bool = typer.Option(False, help="keep the model's own value where shapes differ (a new head)"),
               out: Path = typer.Option(..., help="shiftkit safetensors checkpoint to write")):
    """Import a torchvision / timm state dict or a .pt file as a shiftkit checkpoint (usable as a source).

    Example: shiftkit import r50.pth --arch resnet50 --skip-mismatched --out runs/r50.safetensors
    """
    from .._files import check_output
    from ..interop import import_checkpoint

    check_output(out, "imported checkpoint")
    r = import_checkpoint(source, out, arch=arch, num_classes=num_classes, in_chans=in_chans,
                          skip_mismatched=skip_mismatched)
    json_line(r)
