"""Multi-source transfer: GRASP and its baselines behind one protocol (`absorb(source)`, `.model`).

    merger = transfer.create("grasp", model, target_domain, run_dir="runs/t", tau=0.3)
    for path in sources:
        merger.absorb(path)
    model = merger.finish()
"""
from . import (best_single_source, ensemble, fusion, grasp, greedy_soup, opcm, pearl, ranked, target_only,  # noqa: F401
               task_arithmetic, ties)
from .base import (TRANSFER, BaseMerger, MergeConfig, Merger, config_class, create, merger_class, names, register_transfer,
                   run_sources)
from .zoo import ZooConfig, build_zoo, zoo_sources

__all__ = ["TRANSFER", "BaseMerger", "MergeConfig", "Merger", "config_class", "create", "merger_class", "names", "register_transfer", "run_sources",
           "ZooConfig", "build_zoo", "zoo_sources"]
