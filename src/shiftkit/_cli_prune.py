"""`shiftkit` commands for prune (registered on the main typer app)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from .cli import _table, app, bench_app, console, pick


def _criterion_options(**opts) -> dict:
    """Common options always; method-specific ones only when given (criteria reject unknown options)."""
    common = ("scope", "keep_first", "keep_last", "max_layer_sparsity", "skip_unsupported", "seed")
    return {k: v for k, v in opts.items() if k in common or v is not None}


@app.command("prune")
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
    from . import prune
    from .checkpoints import load_checkpoint, model_from_checkpoint
    from .data import load_domains
    from .train import TrainConfig, evaluate, fit, recalibrate_bn

    prune.check_fraction(sparsity, "--sparsity")
    crit = prune.create(method, **_criterion_options(
        scope=scope, keep_first=keep_first, keep_last=keep_last, max_layer_sparsity=max_layer_sparsity,
        skip_unsupported=skip_unsupported, seed=seed, hybrid_split=hybrid_split, reading=reading, combine=combine,
        inverse=inverse, granularity=granularity, calib_per_class=calib_per_class))
    net = model_from_checkpoint(checkpoint, default_arch="small_cnn")
    load_checkpoint(checkpoint, net)
    domains = load_domains(dataset, root, seed=seed)
    d = pick(domains, domain, "--domain")
    calib = d.train if calib_domain is None else pick(domains, calib_domain, "--calib-domain").train
    cfg = TrainConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size, seed=seed)
    masks = prune.prune_model(net, crit, sparsity, data=calib, steps=steps, train=d.train, val=d.val, train_cfg=cfg)
    prune.apply(net, masks)
    if bn_recalibrate:  # the dense net's BN statistics no longer describe the pruned layers' outputs
        recalibrate_bn(net, calib)
    fit(net, d.train, d.val, cfg)
    report = prune.export(net, out, metadata={"pruned_from": str(checkpoint), "method": method, "dataset": dataset,
                                              "prune_config": json.dumps(dataclasses.asdict(crit.cfg), default=str)})
    _table([{k: v for k, v in r.items() if k != "shape"} for r in report], title=f"{method} @ {sparsity}: true sparsity")
    test = {k: v for k, v in evaluate(net, d.test).items() if k != "loss"}
    console.print(json.dumps({"checkpoint": str(out), "sparsity": report[-1]["sparsity"], "test": test}))


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        from .errors import ConfigError

        raise ConfigError(f"{option}={text!r}: expected comma-separated numbers") from None


@bench_app.command("prune")
def bench_prune(
    model: str = typer.Option("small_cnn"), width: Optional[float] = typer.Option(None, help="model width (vgg: 0.25)"),
    seeds: str = typer.Option("0,1,2"), sparsities: str = typer.Option("0.5,0.7,0.8,0.9,0.95"),
    core_sparsities: str = typer.Option("0.9", help="sparsities of the controls and the hybrid sweep"),
    arms: str = typer.Option("", help="comma-separated arm names (default: all; see shiftkit.bench.prune.ARMS)"),
    dense_train: int = typer.Option(24000), dense_epochs: int = typer.Option(2),
    ft_train: int = typer.Option(3000), ft_epochs: int = typer.Option(2), n_shift: int = typer.Option(300),
    calib_per_class: int = typer.Option(100), dataset: str = typer.Option("fashion_mnist"),
    root: Optional[Path] = typer.Option(None), workers: int = typer.Option(2), threads: int = typer.Option(1),
    report_only: bool = typer.Option(False, help="only rebuild tables and plots from the cached runs"),
    results: Path = typer.Option(Path("benchmarks/results")),
):
    """Pruning under shift: every criterion and control, fine-tuned alike, on clean and shifted test sets.

    Resumable: finished runs are cached in RESULTS/prune_<model>_runs.jsonl and skipped on a rerun.
    Example: shiftkit bench prune --model small_cnn --seeds 0,1,2 --workers 2
    """
    from .bench import _results, prune_report
    from .bench import prune as bp
    from .errors import ConfigError

    unknown = [a for a in arms.split(",") if a and a not in bp.ARMS]
    if unknown:
        raise ConfigError(f"--arms: unknown {unknown}; valid: {', '.join(bp.ARMS)}")
    cfg = bp.BenchConfig(model=model, model_kwargs=(("width", width),) if width is not None else (),
                         seeds=tuple(int(s) for s in _floats(seeds, "--seeds")), sparsities=_floats(sparsities, "--sparsities"),
                         core_sparsities=_floats(core_sparsities, "--core-sparsities"),
                         arms=tuple(a for a in arms.split(",") if a) or tuple(bp.ARMS), dense_train=dense_train,
                         dense_epochs=dense_epochs, ft_train=ft_train, ft_epochs=ft_epochs, n_shift=n_shift,
                         calib_per_class=calib_per_class, dataset=dataset, root=str(root) if root else None)
    jsonl = results / f"prune_{cfg.tag}_runs.jsonl"
    if report_only:
        records = [r for r in _results.read_jsonl(jsonl) if r.get("model") == cfg.model]
    else:
        records = bp.run(cfg, jsonl, workers=workers, threads=threads, progress=console.print)
    command = _results.command_line()
    summary = results / f"prune_shift_{cfg.tag}.json"
    if report_only and summary.exists():  # the tables keep naming the command that ran the benchmark
        command = json.loads(summary.read_text()).get("command", command)
    rows = prune_report.summarize(records)
    prefix = results / f"prune_{cfg.tag}"
    plots = prune_report.write_plots(rows, prefix, prune_report.FULL_ARMS)
    hp = prune_report.hybrid_plot(rows, prefix, cfg.core_sparsities[-1])
    md = prune_report.shift_markdown(records, bp.config_dict(cfg), command, cfg.tag, plots + ([hp] if hp else []))
    _results.write_result(summary, {"config": bp.config_dict(cfg), "command": command, "rows": rows, "markdown": md})
    prune_report.update_results_md(results)
    console.print(md, markup=False)


@bench_app.command("prune-bn")
def bench_prune_bn(
    model: str = typer.Option("small_cnn"), width: Optional[float] = typer.Option(None, help="model width (vgg: 0.25)"),
    seeds: str = typer.Option("0,1,2"), sparsity: float = typer.Option(0.9),
    arms: str = typer.Option("magnitude,gcnet,gcnet_hybrid3,gcnet_combined,dense_ft", help="arms of `bench prune`"),
    results: Path = typer.Option(Path("benchmarks/results")),
):
    """BN statistics after pruning and under shift: pruned, +BN recalibration, fine-tuned, +AdaBN per shifted set.

    Reuses the dense nets cached by `shiftkit bench prune` (same model, seeds and defaults); resumable.
    Example: shiftkit bench prune-bn --model small_cnn --seeds 0,1,2 --sparsity 0.9
    """
    from . import prune
    from .bench import _results, prune_bn, prune_report
    from .bench import prune as bp
    from .errors import ConfigError

    arm_list = [a for a in arms.split(",") if a]
    unknown = [a for a in arm_list if a not in bp.ARMS or bp.ARMS[a].method == "none"]
    if unknown:
        raise ConfigError(f"--arms: unknown {unknown}; valid: {', '.join(a for a in bp.ARMS if a != 'dense')}")
    prune.check_fraction(sparsity, "--sparsity")
    cfg = bp.BenchConfig(model=model, model_kwargs=(("width", width),) if width is not None else (),
                         seeds=tuple(int(s) for s in _floats(seeds, "--seeds")))
    rows = prune_bn.run(cfg, arm_list, sparsity, results / f"prune_bn_{cfg.tag}_runs.jsonl", progress=console.print)
    md = prune_bn.markdown([r for r in rows if r["arm"] in arm_list], cfg, _results.command_line())
    _results.write_result(results / f"prune_bn_{cfg.tag}.json", {"command": _results.command_line(), "markdown": md})
    prune_report.update_results_md(results)
    console.print(md, markup=False)


@bench_app.command("prune-speed")
def bench_prune_speed(model: str = typer.Option("vgg11"), width: float = typer.Option(1.0), n: int = typer.Option(1000),
                      loop_pairs: int = typer.Option(4000, help="channel pairs the per-pair loop is timed on"),
                      threads: int = typer.Option(1), root: Optional[Path] = typer.Option(None),
                      results: Path = typer.Option(Path("benchmarks/results"))):
    """Connectivity speed: one pass with running sums vs the per-pair np.corrcoef loop and vs a forward pass.

    Example: shiftkit bench prune-speed --model vgg11 --n 1000
    """
    import torch

    from .bench import _results, prune_report
    from .bench.prune_speed import run_speed, speed_markdown

    torch.set_num_threads(threads)
    r = run_speed(model=model, width=width, n=n, loop_pairs=loop_pairs, root=root)
    r["command"] = _results.command_line()
    _results.write_result(results / "prune_speed.json", r)
    prune_report.update_results_md(results)
    console.print(speed_markdown(r), markup=False)
