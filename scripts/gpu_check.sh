#!/usr/bin/env bash
# `make gpu-check`: the GPU tests (tests/gpu) and the GPU benchmarks, on one CUDA GPU, with no network.
# Uses whichever Python already has torch with CUDA: PYTHON=python3 make gpu-check (the checkout on PYTHONPATH;
# on a bare image `source .gpu/setup.sh` first, made by ../shared/gpu/prepare.sh). Budget: under 6 minutes.
# Writes benchmarks/results/{train_speed_cuda*,transfer_memory_gpu,prune_speed_gpu,prune_structured_latency_*_cuda}.json
# and their RESULTS.md sections (RESULTS=DIR puts the JSON elsewhere, e.g. $OUT on a lent machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
RESULTS=${RESULTS:-benchmarks/results}

# one line naming what is missing, so it can be brought as a wheel
"$PY" - <<'PYCHECK'
import importlib, re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] + ["pytest"]
names = {"pyyaml": "yaml", "pillow": "PIL", "torch-pruning": "torch_pruning"}
missing = []
for d in deps:
    n = re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].strip()
    try:
        importlib.import_module(names.get(n.lower(), n.replace("-", "_")))
    except ImportError:
        missing.append(n)
if missing:
    sys.exit(f"gpu-check: missing Python packages: {', '.join(missing)} (bring them as wheels: ../shared/gpu/prepare.sh)")
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu-check: torch {torch.__version__} sees no CUDA device (torch.version.cuda={torch.version.cuda})")
print(f"gpu-check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYCHECK

t0=$(date +%s)
"$PY" -m pytest -q -p no:cacheprovider tests/gpu
"$PY" -m shiftkit bench train-speed --device cuda --model small_cnn,resnet20 --epochs 1 --repeats 3 --threads 4 \
  --out "$RESULTS/train_speed_cuda.json"
"$PY" -m shiftkit bench train-speed --device cuda --precision bf16 --model resnet20 --epochs 1 --repeats 2 --threads 4 \
  --out "$RESULTS/train_speed_cuda_bf16.json"
"$PY" -m shiftkit bench transfer-memory --device cuda --archs resnet20 --ks 2,8,64 --fusion-max-k resnet20=64 \
  --folder runs/bench_memory_gpu --results "$RESULTS"
"$PY" -m shiftkit bench transfer-memory --device cuda --archs resnet50 --ks 2,16 --fusion-max-k resnet50=16 \
  --folder runs/bench_memory_gpu --results "$RESULTS"
"$PY" -m shiftkit bench prune-speed --device cuda --model vgg11 --n 1000 --threads 4 --results "$RESULTS"
"$PY" -m shiftkit bench prune-structured --latency --device cuda --model resnet20 --results "$RESULTS"
echo "gpu-check: done in $(( $(date +%s) - t0 )) s"
