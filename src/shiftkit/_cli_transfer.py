"""`shiftkit` commands for transfer: sources, transfer, transfer-methods, bench transfer / transfer-memory."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import typer

from .cli import _table, app, bench_app, console, pick
from .errors import ConfigError


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


@app.command()
def sources(dataset: str = typer.Option("driftfmnist"), model: str = typer.Option("small_cnn"),
            target: Optional[int] = typer.Option(None, help="domain left out (the transfer target)"),
            out: Path = typer.Option(Path("runs/zoo")), base_domain: int = typer.Option(0),
            base_epochs: int = typer.Option(5), source_epochs: int = typer.Option(3),
            width: Optional[int] = typer.Option(None, help="model width option (small_cnn / resnet)"),
            seed: int = typer.Option(0), root: Optional[Path] = typer.Option(None)):
    """Build a source zoo: pretrain a shared base on one domain, fine-tune one source per other domain.

    Example: shiftkit sources --dataset driftfmnist --model small_cnn --target 7 --out runs/zoo
    """
    from .data import load_domains
    from .transfer.zoo import ZooConfig, build_zoo, quick_report

    domains = load_domains(dataset, root, seed=seed)
    cfg = ZooConfig(model=model, model_kwargs={"width": width} if width else {}, base_domain=base_domain,
                    base_epochs=base_epochs, source_epochs=source_epochs, seed=seed)
    build_zoo(domains, out, cfg=cfg, dataset=dataset, exclude=() if target is None else (target,))
    _table(quick_report(domains, out), title=f"zoo {out} (base on {domains[base_domain].name})")


@app.command("transfer-methods")
def transfer_methods():
    """List registered transfer methods.

    Example: shiftkit transfer-methods
    """
    from . import transfer as tr

    print("\n".join(tr.names()))


@app.command()
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
    from . import transfer as tr
    from .checkpoints import atomic_write_json, model_from_checkpoint, save_checkpoint
    from .data import few_shot as cap, load_domains
    from .train import evaluate

    fields = {f.name for f in dataclasses.fields(tr.config_class(method))}  # unknown method: lists valid names
    base, paths = tr.zoo_sources(sources, exclude=(target,))
    domain = pick(load_domains(dataset, root, seed=0), target, "--target")
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
    _table([{"source": Path(r["source"]).name, "skipped": r.get("skipped", False),
             "fraction": r.get("fraction_transferred", ""), "val_after": (r.get("val_after") or {}).get("accuracy", "")}
            for r in merger.records], title=f"{method} -> {domain.name}")
    console.print(f"test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  AUROC {test['auroc']:.4f}; wrote {out}")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _write_section(results: Path) -> None:
    """Regenerate the transfer section of benchmarks/RESULTS.md from whatever result files exist."""
    from .bench import _results
    from .bench.transfer_report import accuracy_section, memory_section

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


@bench_app.command("transfer")
def bench_transfer(dataset: str = typer.Option("driftfmnist", help="driftfmnist | driftfmnist_complementary"),
                   targets: str = typer.Option("7,3,5,1", help="target bins, most important first"),
                   shots: int = typer.Option(100), seeds: str = typer.Option("0,1,2"),
                   methods: str = typer.Option("", help="comma list; default all"),
                   model: str = typer.Option("small_cnn", help="architecture of the zoo (its own base and sources)"),
                   results: Path = typer.Option(Path("benchmarks/results")),
                   tag: str = typer.Option("", help="suffix of the result file (runs in parallel need distinct files)"),
                   report_only: bool = typer.Option(False, help="only regenerate RESULTS.md from the JSON")):
    """Transfer accuracy of every method on one dataset and shot count (paired, few-shot, leave-one-out).

    Each (dataset, shots, model) writes benchmarks/results/transfer_accuracy_<dataset>_<shots>[_<model>].json;
    the RESULTS.md section is rebuilt from all of them.

    Example: shiftkit bench transfer --dataset driftfmnist --targets 7,3,5,1 --shots 100 --seeds 0,1,2
    """
    import warnings

    from .bench import _results
    from .bench.transfer import AccuracyConfig, run_accuracy

    warnings.filterwarnings("ignore", module="torchmetrics")
    if not report_only:
        cfg = AccuracyConfig(grid={dataset: {shots: _ints(targets)}}, seeds=_ints(seeds),
                             methods=tuple(m for m in methods.split(",") if m), model=model)
        suffix = "".join(f"_{x}" for x in (model if model != "small_cnn" else "", tag) if x)
        run_accuracy(cfg, results / f"transfer_accuracy_{dataset}_{shots}{suffix}.json", command=_results.command_line(),
                     log=console.print)
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


@bench_app.command("transfer-memory")
def bench_transfer_memory(archs: str = typer.Option("resnet20,resnet50"), ks: str = typer.Option("2,4,8,16,32,64"),
                          fusion_max_k: str = typer.Option("resnet20=64,resnet50=16", help="fusion holds all K: cap per arch"),
                          folder: Path = typer.Option(Path("runs/bench_memory"), help="synthetic sources (deleted after)"),
                          results: Path = typer.Option(Path("benchmarks/results")), keep: bool = typer.Option(False)):
    """Peak RSS / anonymous memory vs K (fresh process per point) and GRASP's absorb overhead.

    Points run in priority order and are saved one by one; a rerun skips the points already measured.

    Example: shiftkit bench transfer-memory --archs resnet20,resnet50 --ks 2,4,8,16,32,64
    """
    import shutil

    from .bench import _results
    from .bench.transfer_memory import run_memory, run_overhead

    caps = {a: int(k) for a, _, k in (p.partition("=") for p in fusion_max_k.split(",") if p)}
    arch_list, cmd = archs.split(","), _results.command_line()
    overhead = [run_overhead(arch, folder / arch) for arch in arch_list]
    _results.write_result(results / "transfer_overhead.json", {"command": cmd, "rows": overhead})
    console.print(", ".join(f"{o['arch']} absorb overhead {o['ratio']:.2f} (taylor {o['ratio_taylor']:.2f})" for o in overhead))
    run_memory(_memory_points(arch_list, _ints(ks), caps), folder, results / "transfer_memory.json", command=cmd,
               log=console.print)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    _write_section(results)
