"""Merge -> prune on a tiny zoo: a transfer method's result is pruned per speedup and measured under shift."""
from __future__ import annotations

import pytest
import torch

from shiftkit.checkpoints import load_checkpoint, model_from_checkpoint
from shiftkit.data import ArrayDataset, split_domain
from shiftkit.errors import ConfigError
from shiftkit.prune.pipeline import merge_then_prune, shift_sets
from shiftkit.prune.structured import StructuredConfig, load_structured
from shiftkit.train import TrainConfig
from shiftkit.transfer import ZooConfig, build_zoo, zoo_sources


def _domain(name: str, shift: float, seed: int):
    protos = torch.rand((4, 1, 12, 12), generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(160) % 4
    x = (protos[labels] + 0.25 * torch.randn((160, 1, 12, 12), generator=g) + shift).clamp(0, 1)
    return split_domain(name, ArrayDataset(x, labels, list("abcd")), fractions=(0.5, 0.25, 0.25), seed=seed)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    torch.set_num_threads(1)
    domains = [_domain(f"bin{i}", 0.1 * i, i) for i in range(4)]
    out = tmp_path_factory.mktemp("zoo")
    build_zoo(domains, out, cfg=ZooConfig(base_epochs=2, source_epochs=1, batch_size=16), dataset="tiny", exclude=(3,))
    base, sources = zoo_sources(out)
    return domains, base, sources


def test_merge_then_prune_writes_loadable_pruned_models_with_metrics(zoo, tmp_path):
    domains, base, sources = zoo
    model = model_from_checkpoint(base)
    load_checkpoint(base, model)
    sets = shift_sets(domains, 3, corruptions=False)
    res = merge_then_prune(model, domains[3], sources, shift=sets, run_dir=tmp_path, method="fusion",
                           method_options={"finetune_epochs": 1, "initial_epochs": 1, "batch_size": 16},
                           speedups=(1.5, 2.0), prune=StructuredConfig(speedup=2.0, importance="gcnet", step=0.05),
                           finetune=TrainConfig(epochs=1, batch_size=16, progress=False))
    assert set(res["merged"]["shift"]) == {"bin0", "bin1", "bin2"}
    assert [p["speedup_target"] for p in res["pruned"]] == [1.5, 2.0]
    for p in res["pruned"]:
        assert p["speedup"] >= p["speedup_target"] and p["params_ratio"] < 1
        assert 0 <= p["target_accuracy"] <= 1 and set(p["shift_adabn"]) == set(sets)
        net = load_structured(p["checkpoint"])
        assert net(domains[3].test.images[:2].float()).shape == (2, 4)


def test_merge_then_prune_refuses_bad_options(zoo, tmp_path):
    domains, base, sources = zoo
    model = model_from_checkpoint(base)
    with pytest.raises(ConfigError, match="speedups"):
        merge_then_prune(model, domains[3], sources, shift={}, run_dir=tmp_path, speedups=(1.0,))
    with pytest.raises(ConfigError, match="at least one source"):
        merge_then_prune(model, domains[3], [], shift={}, run_dir=tmp_path)
    assert not any(tmp_path.iterdir())
