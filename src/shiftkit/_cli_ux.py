"""`shiftkit run / sweep / report / inspect / export / import`: experiments from one YAML, reports, interop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from .cli import _table, app, console
from .config import Experiment, apply_overrides, parse_experiment, parse_value, split_override
from .errors import ConfigError

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


# ---- command-line flags -> config keys ----------------------------------------------------------------
# One table for every experiment flag of `shiftkit train / prune / transfer / sources`; `shiftkit run`
# accepts the same flags. A flag may set several keys; COMMAND_FLAGS holds where a command's flag
# means something else (train's --out is the model file, its --seed also seeds the data).
FLAG_KEYS: dict[str, tuple[str, ...]] = {
    "dataset": ("data.name",), "root": ("data.root",), "domain": ("data.domain",), "target": ("data.target",),
    "few_shot": ("data.few_shot",), "calib_domain": ("data.calib_domain",),
    "model": ("model.name",), "width": ("model.kwargs.width",),
    "method": ("method.name",), "sparsity": ("method.sparsity",), "steps": ("method.steps",),
    "bn_recalibrate": ("method.bn_recalibrate",),
    "sources": ("method.zoo",), "zoo": ("method.zoo",), "base": ("method.base",), "order": ("method.order",),
    "dense_epochs": ("method.dense_epochs",), "resume": ("method.resume",),
    "base_domain": ("method.base_domain",), "base_epochs": ("method.base_epochs",),
    "source_epochs": ("method.source_epochs",), "checkpoint": ("method.checkpoint",),
    "tau": ("method.options.tau",), "scope": ("method.options.scope",), "hybrid_split": ("method.options.hybrid_split",),
    "reading": ("method.options.reading",), "combine": ("method.options.combine",), "inverse": ("method.options.inverse",),
    "granularity": ("method.options.granularity",), "calib_per_class": ("method.options.calib_per_class",),
    "keep_first": ("method.options.keep_first",), "keep_last": ("method.options.keep_last",),
    "max_layer_sparsity": ("method.options.max_layer_sparsity",),
    "skip_unsupported": ("method.options.skip_unsupported",),
    "epochs": ("budget.epochs",), "finetune_epochs": ("budget.epochs",), "lr": ("budget.lr",),
    "batch_size": ("budget.batch_size",), "seed": ("seed",), "out": ("out",), "save": ("save",),
    "corruptions": ("eval.corruptions",),
}
COMMAND_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"seed": ("seed", "data.seed"), "out": ("save",)},
    "prune": {"seed": ("seed", "data.seed"), "out": ("save",)},
    "transfer": {"set_": ("method.options",)},   # its --set takes method options: tau=0.5
    "sources": {"out": ("method.zoo",)},
}
BOOL_FLAGS = {"resume", "bn_recalibrate", "combine", "inverse", "keep_first", "keep_last", "skip_unsupported", "corruptions"}
_KINDS = {"train": "train", "prune": "prune", "transfer": "transfer", "sources": "transfer"}


def flag_keys(command: str | None = None) -> dict[str, tuple[str, ...]]:
    """{flag (python name): config keys} for `shiftkit <command>` (None: `shiftkit run`)."""
    return {**FLAG_KEYS, **COMMAND_FLAGS.get(command or "", {})}


def from_flags(command: str, **params: Any) -> Experiment:
    """The experiment a `shiftkit train / prune / transfer / sources` command line describes
    (None values = the flag was not given)."""
    keys = flag_keys(command)
    raw: dict[str, Any] = {"method": {"kind": _KINDS[command]}}
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise ConfigError(f"shiftkit {command}: flags {unknown} have no config key")
    for flag, value in params.items():
        if value is None or (flag == "set_" and not value):
            continue
        if flag == "set_":
            value = dict(split_override(pair) for pair in value)
        value = str(value) if isinstance(value, Path) else value
        raw = apply_overrides(raw, {k: value for k in keys[flag]})
    if raw.get("save") and "out" not in raw:  # a model file: results beside it
        raw["out"] = str(Path(raw["save"]).with_suffix(""))
    return parse_experiment(raw, where=f"shiftkit {command}")


def flag_overrides(args: list[str]) -> dict[str, Any]:
    """["--epochs", "1", "--keep-first", "--set", "k=v"] -> {dotted key: value}; unknown flags -> ConfigError."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; flags look like --epochs 1 or --set budget.epochs=1")
        name, eq, value = arg[2:].partition("=")
        neg = name.startswith("no-") and name[3:].replace("-", "_") in BOOL_FLAGS
        flag = (name[3:] if neg else name).replace("-", "_")
        if flag == "set":
            value, i = (value, i) if eq else (args[i + 1] if i + 1 < len(args) else "", i + 1)
            out.update([split_override(value)])
        elif flag not in FLAG_KEYS:
            valid = ", ".join("--" + f.replace("_", "-") for f in sorted(FLAG_KEYS))
            raise ConfigError(f"unknown flag --{name}; valid: --set, {valid}")
        else:
            if flag in BOOL_FLAGS and not eq:
                parsed = not neg
            else:
                if not eq:
                    if i + 1 >= len(args):
                        raise ConfigError(f"flag --{name} needs a value")
                    value, i = args[i + 1], i + 1
                parsed = parse_value(value)
            out.update({key: parsed for key in FLAG_KEYS[flag]})
        i += 1
    return out


def _experiment(config: Path, sets: list[str], extra: list[str]):
    from .config import load_experiment

    overrides = flag_overrides([a for s in sets for a in ("--set", s)] + list(extra))
    return load_experiment(config, overrides=overrides)


def _summary(r: dict) -> dict:
    row = {"run": Path(r["experiment"]["out"]).name, "kind": r["kind"], "method": r["method"], "model": r["model"],
           "seed": r["seed"], "accuracy": r["test"]["accuracy"]}
    if r.get("shifted_mean") is not None:
        row["shifted_mean"] = r["shifted_mean"]
    if "true_sparsity" in r:
        row["sparsity"] = r["true_sparsity"]
    row["seconds"] = r["seconds"]
    return row


@app.command(context_settings=_EXTRA)
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

    from .sweep import run_experiment

    exp = _experiment(config, set_, ctx.args)
    if dry_run:
        print(yaml.safe_dump(exp.dump(), sort_keys=False), end="")
        return
    r = run_experiment(exp)
    _table([_summary(r)], title=f"{config} -> {exp.out}/result.json")


@app.command(context_settings=_EXTRA)
def sweep(ctx: typer.Context, config: Path = typer.Argument(..., help="experiment YAML; its grid: section is the grid"),
          grid: List[str] = typer.Option([], "--grid", help="key=v1,v2 (repeatable), e.g. method.name=grasp,fusion"),
          set_: List[str] = typer.Option([], "--set", help="override a config key for every point"),
          executor: str = typer.Option("local", help="local (sequential, default) | ray (pip install 'shiftkit\\[ray]')"),
          workers: int = typer.Option(2, help="ray: parallel points (CPUs given to Ray)"),
          threads: int = typer.Option(1, help="torch threads per point (same in both executors)"),
          report: bool = typer.Option(True, help="write report.md and plots into the sweep folder"),
          rerun: bool = typer.Option(False, help="run points again even when their result.json is there")):
    """Run a grid of experiments (method x target x seed x model ...), locally or on Ray; points already
    done (same config in <out>/<point>/result.json) are skipped, so a killed sweep continues.

    Example: shiftkit sweep examples/train.yaml --grid seed=0,1 --epochs 1 --out runs/sweep
    """
    from .sweep import expand_grid, run_grid

    exp = _experiment(config, set_, ctx.args)
    extra = {}
    for g in grid:
        key, sep, values = g.partition("=")
        if not sep:
            raise ConfigError(f"--grid expects key=v1,v2, got {g!r}")
        extra[key.strip()] = [parse_value(v) for v in values.split(",")]
    exps = expand_grid(exp, extra)
    console.print(f"{len(exps)} points, executor {executor}")
    results = run_grid(exps, executor=executor, workers=workers, threads=threads, rerun=rerun)
    from .checkpoints import atomic_write_json

    atomic_write_json(Path(exp.out) / "sweep.json", {"executor": executor, "points": [e.out for e in exps]})
    _table([_summary(r) for r in results], title=f"sweep {config} ({executor})")
    if report:
        from .report import write_report

        console.print(f"wrote {write_report(exp.out)}")


@app.command("report")
def report_cmd(results_dir: Path = typer.Argument(..., help="folder with JSON results (searched recursively)"),
               out: Optional[Path] = typer.Option(None, help="report folder (default: RESULTS_DIR)")):
    """Regenerate markdown tables and plots from JSON results: accuracy after each absorbed source,
    accuracy vs sparsity (clean and shifted), memory vs K.

    Example: shiftkit report runs/sweep
    """
    from .report import write_report

    path = write_report(results_dir, out)
    print(path.read_text())  # markdown as is (rich would read ![..](..) as markup)
    console.print(f"wrote {path}")


@app.command("inspect")
def inspect_cmd(checkpoint: Path = typer.Argument(..., help=".safetensors or .pt/.pth checkpoint"),
                tensors: bool = typer.Option(True, help="print the per-tensor table"),
                as_json: bool = typer.Option(False, "--json", help="print everything as JSON")):
    """Print a checkpoint's arch, metadata, tensor table (shape, dtype, sparsity) and total sparsity.

    Example: shiftkit inspect runs/m.safetensors
    """
    from .interop import inspect_checkpoint

    info = inspect_checkpoint(checkpoint)
    if as_json:
        print(json.dumps(info, indent=1, default=str))
        return
    console.print(f"[bold]{checkpoint}[/bold]  arch: {info['arch']}")
    _table([{"key": k, "value": (json.dumps(v) if not isinstance(v, str) else v)[:100]}
            for k, v in info["metadata"].items()], title="metadata")
    if tensors:
        _table([{"tensor": r["name"], "shape": "x".join(map(str, r["shape"])) or "scalar", "dtype": r["dtype"],
                 "params": r["params"], "sparsity": r["sparsity"]} for r in info["tensors"]], title="tensors")
    console.print(f"{len(info['tensors'])} tensors, {info['params']:,} parameters, {info['bytes'] / 2**20:.2f} MiB; "
                  f"weight sparsity {info['weight_sparsity']:.4f} over {info['weight_params']:,} weights")


@app.command("export")
def export_cmd(checkpoint: Path = typer.Argument(..., help="shiftkit checkpoint (trained, merged or pruned)"),
               out: Path = typer.Option(..., help="plain safetensors file for timm / torch users")):
    """Export a model as a plain safetensors state dict (pruning masks folded in) that loads without shiftkit.

    Example: shiftkit export runs/m.safetensors --out runs/m_plain.safetensors
    """
    from .interop import export_checkpoint

    r = export_checkpoint(checkpoint, out)
    console.print(f"wrote {r['out']} ({r['tensors']} tensors, arch {r['arch'] or '?'}); load it with\n"
                  f"  from safetensors.torch import load_file; model.load_state_dict(load_file({str(out)!r}))")


@app.command("import")
def import_cmd(source: Path = typer.Argument(..., help=".pt/.pth/.bin (weights_only) or foreign .safetensors"),
               arch: str = typer.Option(..., help="registered model name (shiftkit models)"),
               num_classes: int = typer.Option(10), in_chans: int = typer.Option(3),
               skip_mismatched: bool = typer.Option(False, help="keep the model's own value where shapes differ (a new head)"),
               out: Path = typer.Option(..., help="shiftkit safetensors checkpoint to write")):
    """Import a torchvision / timm state dict or a .pt file as a shiftkit checkpoint (usable as a source).

    Example: shiftkit import r50.pth --arch resnet50 --skip-mismatched --out runs/r50.safetensors
    """
    from .interop import import_checkpoint

    r = import_checkpoint(source, out, arch=arch, num_classes=num_classes, in_chans=in_chans,
                          skip_mismatched=skip_mismatched)
    console.print(json.dumps(r))
