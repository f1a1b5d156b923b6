"""Issue 22 §2 / §3: results that must not be silently wrong, and values that must not allocate without bound.

Classes (each instance a `python -m shiftkit` process, as a user runs it, except `decode`: in-process reads):
  diverge      train / prune fine-tune / transfer / run with learning rates that overflow: exit 2, one line naming
               the epoch ("diverged"), no model file written
  invalid      a checkpoint with finite but huge weights (NaN/Inf logits): eval and run say the scores are INVALID
  mismatch     a checkpoint meeting data it was not built for (classes, channels): one line naming both
  ranges       counts, sizes, rates and seeds out of range in flags and config keys: one line naming the key
  caps         values that would allocate without bound (width, structured step, pruning rounds, a structured
               file's input_shape): one line before any allocation
  resume       transfer --resume for other target data, sources --out over a zoo built otherwise: one line
  decode       16-bit / float / wide-int images and IDX payloads: their real range, or DataError naming the file
"""
from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ._proc import child_env

__all__ = ["make_fixtures", "cli_cases", "decode_cases", "run_case", "run_silent"]

Case = tuple[str, str, list[str], dict]  # (class, name, argv, expectation)


def _idx(array: np.ndarray, code: int = 0x08, dtype=np.uint8) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(dtype).tobytes()


def _fmnist(root: Path, n_train: int = 80, n_test: int = 40) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28)))))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(n) % 10)))
    return root


def make_fixtures(root: Path) -> dict[str, Path]:
    """Tiny Fashion-MNIST IDX data, checkpoints of other class / channel counts or huge weights, an RGB image
    folder, a structured file with a huge input_shape and a zoo."""
    import torch

    from shiftkit import models
    from shiftkit.checkpoints import model_metadata, save_checkpoint
    from safetensors.torch import save_file
    from ._badopts import _write_zoo

    f = {"data": _fmnist(root / "fmnist"), "out": root / "out"}
    for name, classes, chans in (("c2", 2, 1), ("c3", 3, 1), ("c5", 5, 1), ("c12", 12, 1), ("rgb", 10, 3)):
        f[name] = root / f"{name}.safetensors"
        torch.manual_seed(0)
        save_checkpoint(f[name], models.create("small_cnn", num_classes=classes, in_chans=chans, width=4))
    for name, scale in (("huge18", 1e18), ("huge30", 1e30)):
        torch.manual_seed(0)
        net = models.create("small_cnn", num_classes=10, in_chans=1, width=4)
        with torch.no_grad():
            for n, p in net.named_parameters():
                if n.endswith("weight"):
                    p.mul_(scale)  # finite weights whose logits overflow
        f[name] = root / f"{name}.safetensors"
        save_checkpoint(f[name], net)
    f["good"] = root / "good.safetensors"
    torch.manual_seed(0)
    save_checkpoint(f["good"], models.create("small_cnn", num_classes=10, in_chans=1, width=4))
    from PIL import Image

    for c in ("a", "b"):
        (root / "rgb_folder" / "d0" / c).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            Image.new("RGB", (16, 16), (20 * i, 100, 200 if c == "a" else 0)).save(root / "rgb_folder" / "d0" / c / f"{i}.png")
    f["rgb_folder"] = root / "rgb_folder"
    net = models.create("small_cnn", num_classes=10, in_chans=1, width=4)
    for name, shape in (("shape_huge", [1, 1, 60000, 60000]), ("shape_neg", [1, 1, -28, 28]), ("shape_str", "28x28")):
        meta = {**model_metadata(net), "structured": json.dumps({"history": [], "input_shape": shape})}
        f[name] = root / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(f[name]), metadata=meta)
    f["zoo"] = _write_zoo(root / "zoo", {"a": {}, "b": {}})
    yaml_lr = root / "lr.yaml"
    yaml_lr.write_text(f"data: {{name: fashion_mnist, root: {f['data']}}}\nbudget: {{epochs: 2, lr: 1.0e+8}}\n"
                       f"out: {root / 'out' / 'yaml_lr'}\n")
    f["yaml_lr"] = yaml_lr
    return f


def _err(*needles: str, absent: Path | None = None) -> dict:
    return {"kind": "error", "needles": needles, "absent": absent}


def cli_cases(f: dict[str, Path]) -> list[Case]:
    """(class, name, argv after `shiftkit`, expectation)."""
    d = ["--dataset", "fashion_mnist", "--root", str(f["data"])]
    o = f["out"]
    t = ["transfer", *d, "--target", "0", "--sources", str(f["zoo"])]
    fast = ["--set", "initial_epochs=1", "--set", "finetune_epochs=1"]
    cases: list[Case] = []
    for lr in ("1e6", "1e12", "1e30"):
        cases.append(("diverge", f"train --lr {lr}", ["train", *d, "--epochs", "2", "--lr", lr, "--out",
                                                      str(o / f"t{lr}.safetensors")],
                      _err("diverged in epoch", absent=o / f"t{lr}.safetensors")))
    cases += [
        ("diverge", "prune fine-tune --lr 1e8", ["prune", str(f["good"]), *d, "--method", "magnitude", "--sparsity", "0.5",
                                                  "--lr", "1e8", "--out", str(o / "p.safetensors")],
         _err("diverged", absent=o / "p.safetensors")),
        ("diverge", "transfer lr=1e8", [*t, "--out", str(o / "tr"), "--set", "lr=1e8", *fast],
         _err("diverged", absent=o / "tr" / "model.safetensors")),
        ("diverge", "task_arithmetic lambdas=[1e30]", [*t, "--method", "task_arithmetic", "--out", str(o / "ta"), "--set",
                                                        "lambdas=[1e30]", "--set", f"base={f['zoo'] / 'base.safetensors'}"],
         _err("diverged", "largest starting weight", absent=o / "ta" / "model.safetensors")),
        ("diverge", "run budget.lr=1e8 (YAML)", ["run", str(f["yaml_lr"])],
         _err("diverged", absent=o / "yaml_lr" / "model.safetensors")),
        ("invalid", "task_arithmetic lambdas=[1e38] without fine-tuning",
         [*t, "--method", "task_arithmetic", "--out", str(o / "tb"), "--set", "lambdas=[1e38]", "--set", "initial_epochs=0",
          "--set", "finetune_epochs=0", "--set", f"base={f['zoo'] / 'base.safetensors'}"],
         {"kind": "warn", "needles": ("INVALID (NaN/Inf logits on clean) test accuracy", "scores invalid on clean")}),
        ("invalid", "eval weights x1e18", ["eval", str(f["huge18"]), *d], {"kind": "warn", "needles": ("INVALID",)}),
        ("invalid", "eval weights x1e30", ["eval", str(f["huge30"]), *d], {"kind": "warn", "needles": ("INVALID",)}),
        ("invalid", "prune --finetune-epochs 0 of weights x1e18",
         ["prune", str(f["huge18"]), *d, "--method", "magnitude", "--sparsity", "0.5", "--finetune-epochs", "0",
          "--out", str(o / "ph.safetensors")], {"kind": "warn", "needles": ("scores invalid",)}),
    ]
    for name in ("c2", "c3", "c5", "c12", "rgb"):
        what = "input channel" if name == "rgb" else "classes but the data has 10"
        cases.append(("mismatch", f"eval {name}", ["eval", str(f[name]), *d], _err("does not fit", what, str(f[name]))))
        cases.append(("mismatch", f"prune {name}", ["prune", str(f[name]), *d, "--method", "magnitude",
                                                    "--out", str(o / f"m{name}.safetensors")],
                      _err("does not fit", what, absent=o / f"m{name}.safetensors")))
    cases.append(("mismatch", "eval grayscale model on RGB folder",
                  ["eval", str(f["good"]), "--dataset", "image_folder", "--root", str(f["rgb_folder"])],
                  _err("does not fit", "1 input channel")))
    cases.append(("mismatch", "transfer zoo of 10 classes, data of 2",
                  ["transfer", "--dataset", "image_folder", "--root", str(f["rgb_folder"]), "--target", "0",
                   "--sources", str(f["zoo"]), "--out", str(o / "mm")], _err("does not fit")))
    ranges = [
        ("transfer --few-shot -5", [*t, "--few-shot", "-5", "--out", str(o / "r")], "data.few_shot"),
        ("transfer --few-shot 0", [*t, "--few-shot", "0", "--out", str(o / "r")], "data.few_shot"),
        ("train --seed -1", ["train", *d, "--seed", "-1"], "seed"),
        ("train --seed 2^64", ["train", *d, "--seed", str(2**64)], "seed"),
        ("train --lr nan", ["train", *d, "--lr", "nan"], "budget.lr"),
        ("train --lr inf", ["train", *d, "--lr", "inf"], "budget.lr"),
        ("run lr_grid with nan", ["run", str(f["yaml_lr"]), "--set", "budget.lr=null", "--set",
                                  "budget.lr_grid=[0.001,.nan]"], "budget.lr_grid"),
        ("transfer --set lr=nan", [*t, "--set", "lr=nan", "--out", str(o / "r")], "lr=nan"),
        ("transfer --set weight_decay=inf", [*t, "--set", "weight_decay=inf", "--out", str(o / "r")], "weight_decay"),
        ("sources --base-lr nan", ["sources", *d, "--base-lr", "nan", "--out", str(o / "z")], "method.base_lr"),
        ("sweep --threads 0", ["sweep", str(f["yaml_lr"]), "--threads", "0"], "--threads"),
        ("sweep --workers 0", ["sweep", str(f["yaml_lr"]), "--workers", "0"], "--workers"),
        ("import --num-classes -1", ["import", str(f["good"]), "--arch", "small_cnn", "--num-classes", "-1",
                                     "--out", str(o / "i.safetensors")], "--num-classes"),
        ("import --in-chans 0", ["import", str(f["good"]), "--arch", "small_cnn", "--in-chans", "0",
                                 "--out", str(o / "i.safetensors")], "--in-chans"),
        ("eval --seed -3", ["eval", str(f["good"]), *d, "--seed", "-3"], "--seed"),
        ("run image size 1", ["run", str(f["yaml_lr"]), "--set", "data.name=image_folder", "--set",
                              f"data.root={f['rgb_folder']}", "--set", "data.options.size=1"], "data.options.size"),
        ("bench prune --seeds=-1", ["bench", "prune", "--seeds=-1"], "--seeds"),
        ("bench prune --sparsities 0.5,inf", ["bench", "prune", "--sparsities", "0.5,inf"], "--sparsities"),
        ("bench train-speed --repeats 0", ["bench", "train-speed", "--repeats", "0"], "--repeats"),
        ("bench transfer --shots -5", ["bench", "transfer", "--shots", "-5"], "--shots"),
        ("prune --speedup inf", ["prune", str(f["good"]), *d, "--structured", "--method", "l2", "--speedup", "inf",
                                 "--out", str(o / "s.safetensors")], "method.speedup"),
    ]
    cases += [("ranges", n, a, _err(k)) for n, a, k in ranges]
    caps = [
        ("run model.kwargs.width=1e8", ["run", str(f["yaml_lr"]), "--set", "model.kwargs.width=100000000"], "over the limit"),
        ("run model.kwargs.width=0", ["run", str(f["yaml_lr"]), "--set", "model.kwargs.width=0"], "empty layer"),
        ("run structured step 1e-9", ["run", str(f["yaml_lr"]), "--set", "method.kind=prune", "--set", "method.structured=true",
                                      "--set", "method.name=l2", "--set", "method.speedup=2", "--set",
                                      f"method.checkpoint={f['good']}", "--set", "method.options.step=1e-9"], "pruning steps"),
        ("prune --steps 1e9", ["prune", str(f["good"]), *d, "--method", "magnitude", "--steps", str(10**9),
                               "--out", str(o / "s.safetensors")], "method.steps"),
    ]
    caps += [(f"eval structured input_shape {k[6:]}", ["eval", str(f[k]), *d], "input_shape")
             for k in ("shape_huge", "shape_neg", "shape_str")]
    cases += [("caps", n, a, _err(k)) for n, a, k in caps]
    first = [*t, "--out", str(o / "res"), "--few-shot", "10", *fast]
    cases += [
        ("resume", "transfer (the run resumed below)", first, {"kind": "ok"}),
        ("resume", "transfer --resume --few-shot 12", [*t, "--out", str(o / "res"), "--few-shot", "12", *fast, "--resume"], _err("target train: 10 then, 12 now")),
        ("resume", "transfer --resume --seed 4", [*first, "--seed", "4", "--resume"], _err("seed: 0 then, 4 now")),
        ("resume", "transfer --resume --set lr=1e-3", [*first, "--set", "lr=0.001", "--resume"], _err("lr: 5e-05 then, 0.001 now")),
        ("resume", "sources --out <zoo built otherwise>", ["sources", *d, "--target", "0", "--out", str(f["zoo"]),
                                                           "--base-epochs", "1"], _err("not rebuilt", "base_epochs")),
    ]
    return cases


def judge(case: Case, rc: int, stdout: str, stderr: str) -> str | None:
    """The problem with one CLI outcome, None when it is what the class requires."""
    _, _, _, want = case
    if "Traceback" in stderr:
        return "traceback: " + stderr.strip().splitlines()[-1][:200]
    errors = [line for line in stderr.splitlines() if line.startswith("shiftkit: error:")]
    if want["kind"] == "ok":
        return None if rc == 0 else f"exit {rc}: {stderr.strip()[-200:]}"
    if want["kind"] == "warn":
        text = stdout + stderr
        return None if rc == 0 and all(n in text for n in want["needles"]) else f"exit {rc}, no {want['needles']} said"
    if rc != 2 or len(errors) != 1:
        return f"exit {rc}, {len(errors)} error lines: {stderr.strip()[-200:]}"
    missing = [n for n in want["needles"] if n not in errors[0]]
    if missing:
        return f"error line lacks {missing}: {errors[0][:200]}"
    if want.get("absent") is not None and Path(want["absent"]).exists():
        return f"{want['absent']} was written"
    return None


def decode_cases(root: Path) -> list[tuple[str, Callable[[], object], tuple[float, float] | None]]:
    """(name, read, expected mean range of the decoded uint8 pixels or None for "DataError naming the file")."""
    from PIL import Image

    from shiftkit.data._images import read_image
    from shiftkit.data.idx import load_fashion_mnist

    root.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    images = {"png16 ramp": ((ramp * 65535).astype(np.uint16), (120, 136)),
              "png16 dark": ((ramp * 4000).astype(np.uint16), (5, 10)),
              "tiff float [0,1]": (ramp.astype(np.float32), (120, 136)),
              "tiff float [0,255]": ((ramp * 255).astype(np.float32), (120, 136)),
              "tiff float 1e6": ((ramp * 1e6).astype(np.float32), None),
              "tiff float negative": ((ramp - 0.5).astype(np.float32), None),
              "tiff float nan": (np.full((32, 32), np.nan, np.float32), None),
              "tiff int32 2^30": ((ramp * 2**30).astype(np.int32), None),
              "tiff int32 16-bit values": ((ramp * 60000).astype(np.int32), (110, 125))}
    cases = []
    for name, (arr, want) in images.items():
        path = root / (name.replace(" ", "_").replace("^", "").replace(",", "-").replace("[", "").replace("]", "")
                       + (".png" if name.startswith("png") else ".tiff"))
        Image.fromarray(arr).save(path)
        cases.append((name, lambda p=path: read_image(p, channels=1), want))
    for code, dtype, scale, want in ((0x0D, ">f4", 1.0, (120, 136)), (0x0E, ">f8", 255.0, (120, 136)),
                                     (0x0B, ">i2", 255.0, (120, 136)), (0x0C, ">i4", 65535.0, (120, 136)),
                                     (0x0D, ">f4", 1e4, None), (0x0B, ">i2", -100.0, None), (0x09, "i1", -100.0, None)):
        folder = root / f"idx_{code}_{scale:g}"
        folder.mkdir(exist_ok=True)
        (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.stack([ramp[:28, :28] / ramp[:28, :28].max()] * 4) * scale, code, dtype)))
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(4) % 2)))
        cases.append((f"idx {dtype} x{scale:g}", lambda p=folder: load_fashion_mnist(p).images.numpy(), want))
    return cases


def run_decode(root: Path) -> dict:
    from shiftkit.errors import DataError

    cases, failures = decode_cases(root), []
    for name, read, want in cases:
        try:
            out = read()
        except DataError as e:
            if want is not None or str(root) not in str(e):
                failures.append({"case": name, "problem": f"DataError: {e}"[:300]})
            continue
        except Exception as e:  # anything else is the finding
            failures.append({"case": name, "problem": f"{type(e).__name__}: {e}"[:300]})
            continue
        mean = float(np.asarray(out, dtype=np.float64).mean())
        if want is None or not want[0] <= mean <= want[1]:
            failures.append({"case": name, "problem": f"decoded, mean {mean:.1f}, expected {want or 'DataError'}"})
    return {"cases": len(cases), "failures": failures}


def run_case(argv: list[str], *, cwd: Path | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """`python -m shiftkit ARGV` in a fresh process -> (exit code, stdout, stderr)."""
    env = child_env(OMP_NUM_THREADS="1", COLUMNS="200")
    r = subprocess.run([sys.executable, "-m", "shiftkit", *argv], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def run_silent(work: Path, *, runner: Callable[[list[str]], tuple[int, str, str]] | None = None,
               names: set[str] | None = None, log=print) -> dict:
    """Every case (or those named): counts per class, failures and each case's last stderr line."""
    f = make_fixtures(work)
    runner = runner or (lambda argv: run_case(argv, cwd=work))
    cases = [c for c in cli_cases(f) if names is None or c[1] in names]
    per_class: dict[str, dict] = {}
    failures, lines = [], {}
    for case in cases:
        rc, out, err = runner(case[2])
        problem = judge(case, rc, out, err)
        lines[case[1]] = err.strip().splitlines()[-1][:300] if err.strip() else out.strip()[-200:]
        c = per_class.setdefault(case[0], {"cases": 0, "failures": 0})
        c["cases"] += 1
        if problem:
            c["failures"] += 1
            failures.append({"class": case[0], "case": case[1], "argv": case[2], "problem": problem})
            log(f"  FAIL {case[0]}: {case[1]}: {problem}")
    if names is None or "decode" in names:
        dec = run_decode(work / "decode")
        per_class["decode"] = {"cases": dec["cases"], "failures": len(dec["failures"])}
        failures += [{"class": "decode", **x} for x in dec["failures"]]
    return {"cases": sum(c["cases"] for c in per_class.values()), "per_class": per_class, "failures": failures,
            "stderr": lines}
