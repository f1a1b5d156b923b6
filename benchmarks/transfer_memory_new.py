"""Peak RSS of the new O(1) methods at K = 2 and K = 64 (resnet20 synthetic sources, fresh process per point).

    PYTHONPATH=src python benchmarks/transfer_memory_new.py  ->  benchmarks/results/transfer_memory_new_methods.json
"""
from pathlib import Path

from shiftkit.bench.transfer_memory import run_memory

points = [("resnet20", m, k) for m in ("greedy_soup", "ranked", "grasp_stagegate_copybuffers") for k in (2, 64)]
run_memory(points, Path("runs/bench_memory"), Path("benchmarks/results/transfer_memory_new_methods.json"),
           command="PYTHONPATH=src python benchmarks/transfer_memory_new.py")
