"""Bad options, from the API and the CLI: τ outside [-1, 1], sparsity outside [0, 1), no sources,
sources of another arch / class count / width, unknown method, model, dataset and option names,
damaged zoo manifests and checkpoints. API: a ConfigError / CheckpointError / DataError. CLI: exit
code != 0, exactly one readable line on stderr, no traceback.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from shiftkit.errors import CheckpointError, ConfigError, DataError, ShiftkitError

from ._proc import child_env

__all__ = ["make_fixtures", "api_cases", "cli_cases", "run_api_cases", "run_cli_case", "run_cli_cases"]


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


def _write_zoo(folder: Path, sources: dict[str, dict], *, manifest: str | None = None) -> Path:
    """A zoo folder: base + sources (model kwargs per source name) and its zoo.json (or `manifest` text)."""
    from shiftkit.checkpoints import save_checkpoint
    from ._tiny import tiny_net

    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "base.safetensors", tiny_net(0, num_classes=10), metadata={"role": "base"})
    entries = []
    for i, (name, kw) in enumerate(sources.items(), start=1):
        net = tiny_net(i, **{"num_classes": 10, **kw})
        save_checkpoint(folder / f"source_{name}.safetensors", net)
        entries.append({"index": i, "domain": name, "path": f"source_{name}.safetensors"})
    text = manifest if manifest is not None else json.dumps({"dataset": "fashion_mnist", "base": "base.safetensors",
                                                             "sources": entries, "config": {}})
    (folder / "zoo.json").write_text(text)
    return folder


def make_fixtures(root: Path) -> dict[str, Path]:
    """Tiny Fashion-MNIST IDX data, zoos (good and bad) and checkpoints the cases point at."""
    from shiftkit.checkpoints import save_checkpoint
    from ._tiny import tiny_net

    data = root / "fmnist"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        (data / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))))
        (data / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx((np.arange(n) % 10).astype(np.uint8))))
    f = {"data": data}
    f["zoo"] = _write_zoo(root / "zoo", {"a": {}, "b": {}})
    f["zoo_arch"] = _write_zoo(root / "zoo_arch", {"a": {}, "b": {"norm": False}})
    f["zoo_classes"] = _write_zoo(root / "zoo_classes", {"a": {}, "b": {"num_classes": 5}})
    f["zoo_width"] = _write_zoo(root / "zoo_width", {"a": {}, "b": {"width": 8}})
    f["zoo_empty"] = _write_zoo(root / "zoo_empty", {})
    f["zoo_manifest"] = _write_zoo(root / "zoo_manifest", {"a": {}}, manifest='{"sources": [')
    f["zoo_missing"] = _write_zoo(root / "zoo_missing", {"a": {}})
    (f["zoo_missing"] / "source_a.safetensors").unlink()
    f["ckpt"] = root / "good.safetensors"
    save_checkpoint(f["ckpt"], tiny_net(0, num_classes=10))
    f["ckpt_meta"] = root / "bad_meta.safetensors"
    save_checkpoint(f["ckpt_meta"], tiny_net(0, num_classes=10), metadata={"config": "{not json"})
    f["ckpt_trunc"] = root / "truncated.safetensors"
    f["ckpt_trunc"].write_bytes(f["ckpt"].read_bytes()[:500])
    f["pt_evil"] = root / "evil.pt"
    f["pt_evil"].write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03.")  # os.system("touch")
    f["yaml_bad"] = root / "bad.yaml"
    f["yaml_bad"].write_text("data: {name: driftfmnist}\nmethod: {kind: transfer, name: grasp, tau: 3}\nbogus_key: 1\n")
    f["out"] = root / "out"
    return f


# ---------------------------------------------------------------- API

def api_cases(f: dict[str, Path]) -> list[tuple[str, type, Callable[[], object]]]:
    """(name, expected error type, call)."""
    from shiftkit import models, prune, transfer
    from shiftkit.data import load_domains
    from shiftkit.train import TrainConfig
    from ._tiny import tiny_domains, tiny_net

    target = tiny_domains(2)[1]
    net10 = lambda: tiny_net(0, num_classes=10)  # noqa: E731
    grasp = lambda **kw: transfer.create("grasp", net10(), target, **kw)  # noqa: E731
    z = {k: sorted(f[k].glob("source_*.safetensors")) for k in ("zoo", "zoo_arch", "zoo_classes", "zoo_width")}
    cases = [(f"tau={t}", ConfigError, lambda t=t: grasp(tau=t)) for t in (1.0001, -1.5, 2, float("nan"), float("inf"))]
    cases += [(f"sparsity={s}", ConfigError, lambda s=s: prune.check_fraction(s)) for s in (1.0, 1.5, -0.1, float("nan"))]
    cases += [(f"compute_masks sparsity={s}", ConfigError,
               lambda s=s: prune.compute_masks(net10(), prune.create("magnitude"), s)) for s in (1.0, -0.5)]
    cases += [
        ("empty source list", ConfigError, lambda: transfer.run_sources(grasp(), [])),
        ("source of another arch", CheckpointError, lambda: transfer.run_sources(grasp(initial_epochs=0), z["zoo_arch"])),
        ("source with another class count", CheckpointError,
         lambda: transfer.run_sources(grasp(initial_epochs=0), z["zoo_classes"])),
        ("source of another width", CheckpointError, lambda: transfer.run_sources(grasp(initial_epochs=0), z["zoo_width"])),
        ("missing source file", CheckpointError, lambda: transfer.run_sources(grasp(), [f["zoo_missing"] / "source_a.safetensors"])),
        ("unknown transfer method", ConfigError, lambda: transfer.create("grasp2", net10(), target)),
        ("unknown transfer option", ConfigError, lambda: grasp(taux=0.3)),
        ("bad granularity", ConfigError, lambda: grasp(granularity="row")),
        ("bad mode", ConfigError, lambda: grasp(mode="hessian")),
        ("alignment_batches=0", ConfigError, lambda: grasp(alignment_batches=0)),
        ("negative epochs", ConfigError, lambda: grasp(finetune_epochs=-1)),
        ("unknown prune criterion", ConfigError, lambda: prune.create("gcnett")),
        ("unknown prune option", ConfigError, lambda: prune.create("magnitude", hybrid_split=2)),
        ("bad prune scope", ConfigError, lambda: prune.create("magnitude", scope="everywhere")),
        ("max_layer_sparsity=0", ConfigError, lambda: prune.create("magnitude", max_layer_sparsity=0.0)),
        ("unknown model", ConfigError, lambda: models.create("resnet21")),
        ("unknown dataset", ConfigError, lambda: load_domains("cifar11")),
        ("TrainConfig lr=0", ConfigError, lambda: TrainConfig(lr=0)),
        ("TrainConfig optimizer", ConfigError, lambda: TrainConfig(optimizer="adam")),
        ("zoo without manifest", ConfigError, lambda: transfer.zoo_sources(f["out"] / "nowhere")),
        ("zoo manifest not JSON", ConfigError, lambda: transfer.zoo_sources(f["zoo_manifest"])),
    ]
    return cases


def run_api_cases(f: dict[str, Path]) -> dict:
    failures = []
    cases = api_cases(f)
    for name, expected, call in cases:
        try:
            call()
            failures.append({"case": name, "problem": "accepted"})
        except expected:
            pass
        except Exception as e:  # noqa: BLE001  (the check: anything else is a failure)
            failures.append({"case": name, "problem": f"{type(e).__name__}: {str(e)[:200]}"})
    return {"cases": len(cases), "failures": failures}


# ---------------------------------------------------------------- CLI

def cli_cases(f: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(name, argv after `shiftkit`)."""
    t = ["transfer", "--dataset", "fashion_mnist", "--target", "0", "--root", str(f["data"]), "--out", str(f["out"] / "t")]
    p = ["prune", str(f["ckpt"]), "--dataset", "fashion_mnist", "--root", str(f["data"]), "--out", str(f["out"] / "p.safetensors")]
    return [
        ("transfer tau=1.5", t + ["--sources", str(f["zoo"]), "--tau", "1.5"]),
        ("transfer tau=-2", t + ["--sources", str(f["zoo"]), "--tau", "-2"]),
        ("transfer tau=abc", t + ["--sources", str(f["zoo"]), "--tau", "abc"]),
        ("transfer unknown method", t + ["--sources", str(f["zoo"]), "--method", "grasp2"]),
        ("transfer unknown --set option", t + ["--sources", str(f["zoo"]), "--set", "taux=0.3"]),
        ("transfer bad --set value", t + ["--sources", str(f["zoo"]), "--set", "granularity=row"]),
        ("transfer --set without =", t + ["--sources", str(f["zoo"]), "--set", "tau"]),
        ("transfer empty source list", t + ["--sources", str(f["zoo_empty"])]),
        ("transfer source of another arch", t + ["--sources", str(f["zoo_arch"])]),
        ("transfer source with another class count", t + ["--sources", str(f["zoo_classes"])]),
        ("transfer source of another width", t + ["--sources", str(f["zoo_width"])]),
        ("transfer zoo without manifest", t + ["--sources", str(f["out"] / "nowhere")]),
        ("transfer zoo manifest not JSON", t + ["--sources", str(f["zoo_manifest"])]),
        ("transfer zoo source file missing", t + ["--sources", str(f["zoo_missing"])]),
        ("transfer unknown dataset", t[:2] + ["cifar11"] + t[3:] + ["--sources", str(f["zoo"])]),
        ("transfer target out of range", t[:4] + ["99"] + t[5:] + ["--sources", str(f["zoo"])]),
        ("prune sparsity=1.0", p + ["--method", "magnitude", "--sparsity", "1.0"]),
        ("prune sparsity=1.5", p + ["--method", "magnitude", "--sparsity", "1.5"]),
        ("prune sparsity=-0.1", p + ["--method", "magnitude", "--sparsity", "-0.1"]),
        ("prune unknown method", p + ["--method", "gcnett"]),
        ("prune bad scope", p + ["--method", "magnitude", "--scope", "everywhere"]),
        ("prune truncated checkpoint", ["prune", str(f["ckpt_trunc"]), "--sparsity", "0.5"]),
        ("prune checkpoint with garbage config", ["prune", str(f["ckpt_meta"]), "--method", "magnitude"]),
        ("train unknown model", ["train", "--model", "resnet21"]),
        ("train unknown dataset", ["train", "--dataset", "cifar11"]),
        ("train lr=0", ["train", "--root", str(f["data"]), "--dataset", "fashion_mnist", "--lr", "0"]),
        ("train unknown option", ["train", "--bogus", "1"]),
        ("eval missing checkpoint", ["eval", str(f["out"] / "missing.safetensors")]),
        ("eval truncated checkpoint", ["eval", str(f["ckpt_trunc"])]),
        ("eval checkpoint with garbage config", ["eval", str(f["ckpt_meta"]), "--dataset", "fashion_mnist",
                                                 "--root", str(f["data"])]),
        ("data unknown dataset", ["data", "cifar11"]),
        ("inspect truncated checkpoint", ["inspect", str(f["ckpt_trunc"])]),
        ("import code-carrying .pt", ["import", str(f["pt_evil"]), "--arch", "small_cnn", "--out", str(f["out"] / "i.safetensors")]),
        ("import unknown arch", ["import", str(f["ckpt"]), "--arch", "resnet21", "--out", str(f["out"] / "i.safetensors")]),
        ("run bad experiment YAML", ["run", str(f["yaml_bad"])]),
        ("run missing YAML", ["run", str(f["out"] / "missing.yaml")]),
        ("unknown command", ["merge-everything"]),
    ]


def _judge(rc: int, stderr: str) -> str | None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if rc == 0:
        return "exit code 0"
    if "Traceback" in stderr:
        return "traceback: " + (lines[-1] if lines else "")
    if len(lines) != 1:
        return f"{len(lines)} stderr lines: {' | '.join(lines[:4])[:300]}"
    return None


def run_cli_case(argv: list[str], *, cwd: Path | None = None, timeout: float = 300) -> tuple[int, str]:
    """`python -m shiftkit ARGV` in a subprocess -> (exit code, stderr)."""
    env = child_env(OMP_NUM_THREADS="1", COLUMNS="200")
    r = subprocess.run([sys.executable, "-m", "shiftkit", *argv], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    return r.returncode, r.stderr


def run_cli_cases(f: dict[str, Path], *, runner=run_cli_case, names: set[str] | None = None) -> dict:
    """Every CLI case through `runner(argv) -> (rc, stderr)`; returns counts, failures and each case's line."""
    cases = [(n, a) for n, a in cli_cases(f) if names is None or n in names]
    failures, lines = [], {}
    for name, argv in cases:
        rc, err = runner(argv)
        problem = _judge(rc, err)
        lines[name] = err.strip().splitlines()[-1][:300] if err.strip() else ""
        if problem:
            failures.append({"case": name, "argv": argv, "problem": problem})
    return {"cases": len(cases), "failures": failures, "stderr": lines}
