"""The k-fold and tuned-lr settings of the transfer benchmark (the CLI has no flags for them yet).

    PYTHONPATH=src python benchmarks/transfer_settings.py kfold5 7,5,3 0,1,2
    PYTHONPATH=src python benchmarks/transfer_settings.py tuned 7,5,3 0,1,2
    PYTHONPATH=src python benchmarks/transfer_settings.py zoo1 7,5,3 0,1,2
Writes benchmarks/results/settings/<setting>/transfer_accuracy_driftfmnist_100.json (outside the folder the
RESULTS.md tables are built from, so the settings never mix); benchmarks/transfer_notes.md reads them.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from shiftkit.bench.transfer import AccuracyConfig, run_accuracy

SETTINGS = {
    # k-fold selection only changes methods that select without training: grasp runs would equal the reference
    "kfold5": dict(val_folds=5, orders=("temporal",), methods=("best_single_source", "greedy_soup", "ranked")),
    # every method picks its lr from one grid on target val only; temporal order (the CPU budget of one session)
    "tuned": dict(lr_grid=(5e-5, 3e-4, 1e-3), orders=("temporal",),
                  methods=("best_single_source", "greedy_soup", "ranked", "grasp_stagegate", "grasp")),
    # a second zoo (base init and source training from seed 1): does the ranking survive another zoo?
    "zoo1": dict(zoo_seed=1, methods=("best_single_source", "greedy_soup", "ranked", "grasp_stagegate", "grasp")),
}

if __name__ == "__main__":
    name, targets, seeds = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = AccuracyConfig(grid={"driftfmnist": {100: tuple(int(t) for t in targets.split(","))}},
                         seeds=tuple(int(s) for s in seeds.split(",")), last_epoch_methods=(), **SETTINGS[name])
    out = Path("benchmarks/results/settings") / name / "transfer_accuracy_driftfmnist_100.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_accuracy(cfg, out, command="PYTHONPATH=src python " + shlex.join(sys.argv))
