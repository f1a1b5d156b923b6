"""`shiftkit bench ...`: benchmarks that write JSON to benchmarks/results/ and update benchmarks/RESULTS.md."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ._common import say, table

if TYPE_CHECKING:
    from ..bench.transfer import AccuracyConfig

commands = typer.Typer(no_args_is_help=True, help="Benchmarks: write JSON to benchmarks/results/ and update benchmarks/RESULTS.md.")


@commands.command("train-speed")
def bench_train_speed(models: str = typer.Option("small_cnn,resnet20", "--model", help="comma-separated model names"),
                      epochs: int = typer.Option(2, min=1), repeats: int = typer.Option(3, min=1),
                      threads: int = typer.Option(2, min=1), root: Optional[Path] = typer.Option(None),
                      out: Optional[Path] = typer.Option(None, help="default benchmarks/results/train_speed[_DEVICE].json"),
                      device: str = typer.Option("cpu", help="cpu (the published table) | cuda | cuda:N | auto"),
                      precision: str = typer.Option("fp32", help="fp32 | bf16 | fp16 (both loops autocast)")):
    """Training-loop time of shiftkit's fit() vs the faster of two bare PyTorch loops (contiguous and
    channels_last), per model, in one run (target ratio <= 1.3).

    Example: shiftkit bench train-speed --model small_cnn,resnet20 --epochs 1 --repeats 3
    """
    import torch

    from ..bench import _results, train_speed

    from ..device import resolve_device

    torch.set_num_threads(threads)
    kind = resolve_device(device).type  # the CPU table and a GPU table are kept apart
    suffix = "" if kind == "cpu" else f"_{kind}"
    runs = [train_speed.run(model=m.strip(), epochs=epochs, repeats=repeats, root=root, device=device,
                            precision=precision) for m in models.split(",") if m.strip()]
    command = _results.command_line()
    _results.write_result(out or Path(f"benchmarks/results/train_speed{suffix}.json"), {"command": command, "runs": runs})
    body = train_speed.render_section(runs, command)
    _results.update_section(f"train-speed{suffix}", body)
    say(body)


@commands.command("data-speed")
def bench_data_speed(images: int = typer.Option(300, min=1, help="images per size for the loader columns"),
                     memory_images: int = typer.Option(2000, min=0, help="224-px images for the memory rows (0: skip)"),
                     workers: int = typer.Option(2, min=0, help="DataLoader workers of the on-the-fly column"),
                     threads: int = typer.Option(2, min=1), work: Optional[Path] = typer.Option(None, help="scratch folder"),
                     out: Path = typer.Option(Path("benchmarks/results/data_speed.json")),
                     report_only: bool = typer.Option(False, help="only rebuild the RESULTS.md section from --out")):
    """Loader images/s at 32/64/224 px (in memory, cached, on the fly) next to resnet20 / resnet50 training
    steps, and the peak anonymous memory of loading a folder (in memory vs cached).

    Example: shiftkit bench data-speed --images 300 --memory-images 2000
    """
    import torch

    from ..bench import _results, data_speed

    if report_only:
        import json

        result = json.loads(out.read_text())
        command = result["command"]
    else:
        torch.set_num_threads(threads)
        result = data_speed.run(images=images, memory_images=memory_images, workers=workers,
                                work=str(work) if work else None)
        command = _results.command_line()
        _results.write_result(out, {"command": command, **result})
    body = data_speed.render_section(result, command)
    _results.update_section("data-speed", body)
    say(body)


def _floats(text: str, option: str) -> tuple[float, ...]:
    from ..errors import ConfigError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option}={text!r}: expected comma-separated numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{option}={text!r}: expected finite numbers")
    return values


def _ints(text: str, option: str = "--seeds", *, low: int = 0, high: int = 2**32 - 1) -> tuple[int, ...]:
    """Comma-separated integers in low..high (seeds: 0..2**32-1, like config.MAX_SEED); ConfigError naming the option."""
    from ..errors import ConfigError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option}={text!r}: expected comma-separated integers") from None
    if not all(low <= v <= high for v in values):
        raise ConfigError(f"{option}={text!r}: every value must be in {low}..{high}")
    return values


@commands.command("prune")
def bench_prune(
    model: str = typer.Option("small_cnn"), width: Optional[float] = typer.Option(None, help="model width (vgg: 0.25)"),
    seeds: str = typer.Option("0,1,2"), sparsities: str = typer.Option("0.5,0.7,0.8,0.9,0.95"),
    core_sparsities: str = typer.Option("0.9", help="sparsities of the controls and the hybrid sweep"),
    arms: str = typer.Option("", help="comma-separated arm names (default: all; see shiftkit.bench.prune.ARMS)"),
    dense_train: int = typer.Option(24000, min=1), dense_epochs: int = typer.Option(2, min=0),
    ft_train: int = typer.Option(3000, min=1), ft_epochs: int = typer.Option(2, min=0), n_shift: int = typer.Option(300, min=1),
    calib_per_class: int = typer.Option(100, min=1), dataset: str = typer.Option("fashion_mnist"),
    root: Optional[Path] = typer.Option(None), workers: int = typer.Option(2, min=1), threads: int = typer.Option(1, min=1),
    report_only: bool = typer.Option(False, help="only rebuild tables and plots from the cached runs"),
    results: Path = typer.Option(Path("benchmarks/results")),
):
    """Pruning under shift: every criterion and control, fine-tuned alike, on clean and shifted test sets.

    Resumable: finished runs are cached in RESULTS/prune_<model>_runs.jsonl and skipped on a rerun.
    Example: shiftkit bench prune --model small_cnn --seeds 0,1,2 --workers 2
    """
    from ..bench import _results, prune_report
    from ..bench import prune as bp
    from ..errors import ConfigError

    unknown = [a for a in arms.split(",") if a and a not in bp.ARMS]
    if unknown:
        raise ConfigError(f"--arms: unknown {unknown}; valid: {', '.join(bp.ARMS)}")
    cfg = bp.BenchConfig(model=model, model_kwargs=(("width", width),) if width is not None else (),
                         seeds=_ints(seeds), sparsities=_floats(sparsities, "--sparsities"),
                         core_sparsities=_floats(core_sparsities, "--core-sparsities"),
                         arms=tuple(a for a in arms.split(",") if a) or tuple(bp.ARMS), dense_train=dense_train,
                         dense_epochs=dense_epochs, ft_train=ft_train, ft_epochs=ft_epochs, n_shift=n_shift,
                         calib_per_class=calib_per_class, dataset=dataset, root=str(root) if root else None)
    jsonl = results / f"prune_{cfg.tag}_runs.jsonl"
    if report_only:
        records = [r for r in _results.read_jsonl(jsonl) if r.get("model") == cfg.model]
    else:
        records = bp.run(cfg, jsonl, workers=workers, threads=threads, progress=say)
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
    say(md)


@commands.command("prune-bn")
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
    from .. import prune
    from ..bench import _results, prune_bn, prune_report
    from ..bench import prune as bp
    from ..errors import ConfigError

    arm_list = [a for a in arms.split(",") if a]
    unknown = [a for a in arm_list if a not in bp.ARMS or bp.ARMS[a].method == "none"]
    if unknown:
        raise ConfigError(f"--arms: unknown {unknown}; valid: {', '.join(a for a in bp.ARMS if a != 'dense')}")
    prune.check_fraction(sparsity, "--sparsity")
    cfg = bp.BenchConfig(model=model, model_kwargs=(("width", width),) if width is not None else (),
                         seeds=_ints(seeds))
    rows = prune_bn.run(cfg, arm_list, sparsity, results / f"prune_bn_{cfg.tag}_runs.jsonl", progress=say)
    md = prune_bn.markdown([r for r in rows if r["arm"] in arm_list], cfg, _results.command_line())
    _results.write_result(results / f"prune_bn_{cfg.tag}.json", {"command": _results.command_line(), "markdown": md})
    prune_report.update_results_md(results)
    say(md)


@commands.command("prune-speed")
def bench_prune_speed(model: str = typer.Option("vgg11"), width: float = typer.Option(1.0, min=0.01), n: int = typer.Option(1000, min=1),
                      loop_pairs: int = typer.Option(4000, min=1, help="channel pairs the per-pair loop is timed on"),
                      threads: int = typer.Option(1, min=1), root: Optional[Path] = typer.Option(None),
                      results: Path = typer.Option(Path("benchmarks/results")),
                      device: str = typer.Option("cpu", help="cpu: the loop comparison (published) | cuda: connectivity "
                                                 "and a forward pass on the GPU vs the CPU, in one run")):
    """Connectivity speed: one pass with running sums vs the per-pair np.corrcoef loop and vs a forward pass.

    Example: shiftkit bench prune-speed --model vgg11 --n 1000
    """
    import torch

    from ..bench import _results, prune_report
    from ..bench.prune_speed import device_speed_markdown, run_device_speed, run_speed, speed_markdown
    from ..device import resolve_device

    torch.set_num_threads(threads)
    if resolve_device(device).type != "cpu":
        r = {**run_device_speed(model=model, width=width, n=n, root=root, device=device),
             "command": _results.command_line()}
        _results.write_result(results / "prune_speed_gpu.json", r)
        _results.update_section("prune-speed-gpu", device_speed_markdown(r))
        say(device_speed_markdown(r))
        return
    r = run_speed(model=model, width=width, n=n, loop_pairs=loop_pairs, root=root)
    r["command"] = _results.command_line()
    _results.write_result(results / "prune_speed.json", r)
    prune_report.update_results_md(results)
    say(speed_markdown(r))


def _write_section(results: Path) -> None:
    """Regenerate the transfer section of benchmarks/RESULTS.md from whatever result files exist."""
    from ..bench import _results
    from ..bench.transfer_report import accuracy_section, memory_section

    plots = _results.RESULTS_MD.parent / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    parts = ["## Multi-source transfer (GRASP and baselines)"]
    mem, ovh = (results / f"transfer_{n}.json" for n in ("memory", "overhead"))
    accuracy = [json.loads(p.read_text()) for p in sorted(results.glob("transfer_accuracy_*.json"))]
    if accuracy:
        parts.append(accuracy_section(accuracy, plots))
    notes = _results.RESULTS_MD.parent / "transfer_notes.md"  # hand-written reading of the tables above
    if notes.is_file():
        parts.append(notes.read_text().strip())
    if mem.is_file():
        parts.append(memory_section(json.loads(mem.read_text()), json.loads(ovh.read_text()) if ovh.is_file() else None, plots))
    _results.update_section("transfer", "\n\n".join(parts))


def _transfer_config(dataset: str, targets: str, shots: int, seeds: str, methods: str, model: str, *, val_folds: int,
                     lr_grid: str, zoo_seed: int, orders: str, last_epoch: bool) -> AccuracyConfig:
    """The AccuracyConfig of `bench transfer`'s options; a bad setting raises ConfigError naming its option."""
    from ..bench.transfer import ORDERS, AccuracyConfig
    from ..errors import ConfigError
    from ..transfer.base import MergeConfig

    try:
        MergeConfig(val_folds=val_folds)  # the methods' own rule for val_folds
    except ConfigError as e:
        raise ConfigError(f"--val-folds: {e}") from e
    grid = _floats(lr_grid, "--lr-grid")
    if any(not 0 < lr < float("inf") for lr in grid) or len(set(grid)) < len(grid):
        raise ConfigError(f"--lr-grid={lr_grid!r}: expected distinct positive learning rates, e.g. 5e-5,3e-4,1e-3")
    order_list = tuple(o.strip() for o in orders.split(",") if o.strip())
    if not order_list or any(o not in ORDERS for o in order_list) or len(set(order_list)) < len(order_list):
        raise ConfigError(f"--orders={orders!r}: expected distinct names from {', '.join(ORDERS)}")
    return AccuracyConfig(grid={dataset: {shots: _ints(targets, "--targets", low=-(2**31))}}, seeds=_ints(seeds),
                          methods=tuple(m for m in methods.split(",") if m), model=model, val_folds=val_folds,
                          lr_grid=grid, zoo_seed=zoo_seed, orders=order_list,
                          **({} if last_epoch else {"last_epoch_methods": ()}))


@commands.command("transfer")
def bench_transfer(dataset: str = typer.Option("driftfmnist", help="driftfmnist | driftfmnist_complementary"),
                   targets: str = typer.Option("7,3,5,1", help="target bins, most important first"),
                   shots: int = typer.Option(100, min=1), seeds: str = typer.Option("0,1,2"),
                   methods: str = typer.Option("", help="comma list; default all"),
                   model: str = typer.Option("small_cnn", help="architecture of the zoo (its own base and sources)"),
                   val_folds: int = typer.Option(0, "--val-folds", help="setting: k >= 2 selects by k-fold over every "
                                                 "labelled target image (train + val); 0 = the val split"),
                   lr_grid: str = typer.Option("", "--lr-grid", help="setting: each method picks its lr from this "
                                               "comma list on target val, e.g. 5e-5,3e-4,1e-3; empty = its default lr"),
                   zoo_seed: int = typer.Option(0, "--zoo-seed", min=0, help="setting: seed of the zoo (base init, "
                                                "source training); 0 = the reference zoo"),
                   orders: str = typer.Option("temporal,reverse,random", "--orders",
                                              help="source orders to run (comma list; the first one also gets the "
                                                   "last-epoch runs and the curves)"),
                   last_epoch: bool = typer.Option(True, "--last-epoch/--no-last-epoch",
                                                   help="also run grasp / sequential_* with last-epoch selection"),
                   results: Path = typer.Option(Path("benchmarks/results")),
                   tag: str = typer.Option("", help="suffix of the result file (runs in parallel need distinct files)"),
                   report_only: bool = typer.Option(False, help="only regenerate RESULTS.md from the JSON"),
                   device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | auto: where zoo, merges and "
                                              "fine-tuning run (a GPU's rows go to a file of their own)"),
                   precision: str = typer.Option("fp32", help="fp32 | bf16 | fp16: the methods' fine-tuning (zoo: "
                                                 "fp32); not fp32: a file of its own, to compare verdicts")):
    """Transfer accuracy of every method on one dataset and shot count (paired, few-shot, leave-one-out).

    Each (dataset, shots, model, setting) writes its own
    benchmarks/results/transfer_accuracy_<dataset>_<shots>[_<model>][_kfold<k>][_lrgrid][_zoo<s>][_<tag>].json
    (a setting = --val-folds, --lr-grid, --zoo-seed); the RESULTS.md section is rebuilt from all of them, one
    table per setting.

    Example: shiftkit bench transfer --dataset driftfmnist --targets 7,3,5,1 --shots 100 --seeds 0,1,2
    """
    import warnings

    from ..bench import _results
    from ..bench.transfer import result_name, run_accuracy
    from ..device import check_device_spec

    warnings.filterwarnings("ignore", module="torchmetrics")
    if not report_only:
        cfg = _transfer_config(dataset, targets, shots, seeds, methods, model, val_folds=val_folds, lr_grid=lr_grid,
                               zoo_seed=zoo_seed, orders=orders, last_epoch=last_epoch)
        device = check_device_spec(device)
        run_accuracy(cfg, results / result_name(dataset, shots, cfg, tag, device, precision),
                     command=_results.command_line(), log=say, device=device, precision=precision)
    _write_section(results)


def _memory_points(archs: list[str], ks: tuple[int, ...], fusion_caps: dict[str, int]) -> list[tuple[str, str, int]]:
    """Priority order: the K_min/K_max ends of GRASP and fusion first, then taylor, then the K in between."""
    lo, hi = min(ks), max(ks)
    first = []
    for a in archs:  # cheap, decisive points first: GRASP's two ends, fusion's growth, taylor's two ends
        cap = fusion_caps.get(a, hi)
        first += [(a, "grasp", lo)] + [(a, "fusion", k) for k in ks if k <= cap] + [(a, "grasp", hi)]
        first += [(a, "grasp_taylor", lo), (a, "grasp_taylor", hi)]
    rest = [(a, m, k) for a in archs for m in ("grasp", "grasp_taylor") for k in ks if k not in (lo, hi)]
    return first + rest


@commands.command("transfer-memory")
def bench_transfer_memory(archs: str = typer.Option("resnet20,resnet50"), ks: str = typer.Option("2,4,8,16,32,64"),
                          fusion_max_k: str = typer.Option("resnet20=64,resnet50=16", help="fusion holds all K: cap per arch"),
                          folder: Path = typer.Option(Path("runs/bench_memory"), help="synthetic sources (deleted after)"),
                          results: Path = typer.Option(Path("benchmarks/results")), keep: bool = typer.Option(False),
                          overhead_only: bool = typer.Option(False, "--overhead-only",
                                                             help="time the absorb overhead only (run it alone)"),
                          device: str = typer.Option("cpu", help="cpu (RSS, the published table) | cuda: peak GPU "
                                                     "memory (torch.cuda.max_memory_allocated) vs K")):
    """Peak RSS / anonymous memory vs K (fresh process per point) and GRASP's absorb overhead.

    Points run in priority order and are saved one by one; a rerun skips the points already measured.

    Example: shiftkit bench transfer-memory --archs resnet20,resnet50 --ks 2,4,8,16,32,64
    """
    import shutil

    from ..bench import _results
    from ..bench.transfer_memory import run_memory, run_overhead

    from ..bench.transfer_memory import render_gpu_section
    from ..device import resolve_device

    caps = {a: int(k) for a, _, k in (p.partition("=") for p in fusion_max_k.split(",") if p)}
    arch_list, cmd = archs.split(","), _results.command_line()
    if resolve_device(device).type != "cpu":  # a GPU table of its own; the CPU tables stay as they are
        rows = run_memory(_memory_points(arch_list, _ints(ks, "--ks", low=1, high=10**4), caps), folder, results / "transfer_memory_gpu.json",
                          command=cmd, log=say, device=device)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
        body = render_gpu_section(rows, cmd)
        _results.update_section("transfer-memory-gpu", body)
        say(body)
        return
    overhead = [run_overhead(arch, folder / arch) for arch in arch_list]
    _results.write_result(results / "transfer_overhead.json", {"command": cmd, "rows": overhead})
    say(", ".join(f"{o['arch']} absorb overhead {o['ratio']:.2f} (taylor {o['ratio_taylor']:.2f})" for o in overhead))
    if not overhead_only:
        run_memory(_memory_points(arch_list, _ints(ks, "--ks", low=1, high=10**4), caps), folder, results / "transfer_memory.json", command=cmd,
                   log=say)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    _write_section(results)


@commands.command("prune-structured")
def bench_prune_structured(
    model: str = typer.Option("resnet20"), width: Optional[float] = typer.Option(None, help="model width (vgg: 0.25)"),
    seeds: str = typer.Option("0,1,2"), speedups: str = typer.Option("1.5,2.0,3.0", help="FLOP reductions"),
    importances: str = typer.Option("", help="comma-separated channel importances (default: all arms)"),
    ft_train: int = typer.Option(3000, min=1), ft_epochs: int = typer.Option(2, min=0),
    scope: str = typer.Option("global", help="global: one ranking over all layers; layerwise: the same ratio in every layer"),
    latency: bool = typer.Option(False, "--latency", help="instead: CPU latency of dense vs pruned (run it alone)"),
    speedup: float = typer.Option(2.0, help="--latency: the speedup timed"),
    importance: str = typer.Option("l2", help="--latency: the importance of the timed pruned net"),
    report_only: bool = typer.Option(False, help="only rebuild the table from the cached runs"),
    results: Path = typer.Option(Path("benchmarks/results")),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | auto (a GPU's runs and latency: files of their own)"),
):
    """Structural (channel) pruning under shift: every channel importance at each FLOP speedup, fine-tuned alike;
    params, MACs and file size; or, with --latency, CPU latency at batch 1 and 64 (1 and 2 threads).

    Reuses the dense nets cached by `shiftkit bench prune` (same model and seeds); resumable.
    Example: shiftkit bench prune-structured --model resnet20 --seeds 0,1,2 --speedups 2.0
    """
    from ..bench import _results
    from ..bench import prune_structured as bs

    seed_list = _ints(seeds)
    if latency:
        rows = bs.main_latency(model=model, width=width, seed=seed_list[0], speedup=speedup, importance=importance,
                               results=results, command=_results.command_line(), device=device)
        table(rows, title=f"{model}: latency of the {speedup}x pruned net relative to the dense one (same run)")
        return
    md = bs.main(model=model, width=width, seeds=seed_list, speedups=_floats(speedups, "--speedups"),
                 importances=tuple(i for i in importances.split(",") if i) or bs.IMPORTANCE_ARMS, ft_train=ft_train,
                 ft_epochs=ft_epochs, scope=scope, results=results, report_only=report_only, progress=say,
                 device=device)
    say(md)


@commands.command("merge-prune")
def bench_merge_prune(
    configs: str = typer.Option("benchmarks/configs/merge_then_prune",
                                help="comma-separated merge -> prune YAMLs (pipeline: transfer, prune) or folders of them"),
    seeds: str = typer.Option("0,1,2"), results: Path = typer.Option(Path("benchmarks/results")),
    report_only: bool = typer.Option(False, help="only rebuild the table from RESULTS/merge_prune.json"),
    device: Optional[str] = typer.Option(None, help="override every config's device (auto | cpu | cuda | cuda:N)"),
):
    """Merge -> prune under shift: each config's seed sweep (`shiftkit sweep CONFIG --grid seed=...`), then one
    row per config: the merged vs the pruned model on the target bin and on the other bins, paired by seed.

    Points already done (same experiment in <out>/seed-S/result.json) are reused, not run again.
    Example: shiftkit bench merge-prune --configs benchmarks/configs/merge_then_prune --seeds 0,1,2
    """
    from ..bench import _results
    from ..bench import merge_prune as mp

    if report_only:
        say(mp.report(results))
        return
    from ..config import load_experiment
    from ..sweep import expand_grid, run_grid

    seed_list = list(_ints(seeds))
    exps = {}
    for path in mp.config_paths(configs):  # every config checked before any point runs
        exp = load_experiment(path, overrides={"device": device} if device else ())
        mp.check_config(path, exp.dump())
        exps[path.stem] = expand_grid(exp, {"seed": seed_list})
    rows = []
    for name, points in exps.items():
        say(f"{name}: {len(points)} points")
        rows += [mp.point_row(name, r) for r in run_grid(points)]
    say(mp.write(results, rows, _results.command_line()))


def _outputs_checked_first(fn):
    """A bench command that first checks where it will write (`--results` folder, `--out` file, RESULTS.md):
    a device, FIFO or folder in a file's place, or an unwritable place, is one line before hours of work."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        from .._files import check_folder, check_output
        from ..bench import _results

        if isinstance(kwargs.get("results"), Path):
            check_folder(kwargs["results"], "results folder (--results)")
        if isinstance(kwargs.get("out"), Path):
            check_output(kwargs["out"], "result file (--out)")
        check_output(_results.RESULTS_MD, "results table")
        return fn(*args, **kwargs)
    return run


for _command in commands.registered_commands:  # every bench command, one wrapper
    _command.callback = _outputs_checked_first(_command.callback)
