"""Baseline specifics: PEARL uses peft, ensembles vote, TIES trims and elects, fusion averages, OPCM projects."""
from __future__ import annotations

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from shiftkit import transfer
from shiftkit.checkpoints import LazyCheckpoint
from shiftkit.transfer.opcm import project_out
from shiftkit.transfer.ties import ties_combine

from transfer_fixtures import FAST


def test_pearl_uses_peft_lora_and_learns_only_the_composition(zoo):
    merger = transfer.create("pearl", zoo.model(), zoo.target, base=str(zoo.base), **FAST)
    for s in zoo.sources[:3]:
        merger.absorb(s)
    assert isinstance(merger.model.peft, PeftModel)
    lora = [m for m in merger.model.modules() if isinstance(m, LoraLayer)]
    assert len(lora) == 5 and all(len(m.lora_A) == 3 for m in lora)
    w0 = {k: v.item() for k, v in merger.model.weights.items()}
    merger.finish()
    trainable = [n for n, p in merger.model.named_parameters() if p.requires_grad]
    assert trainable == [f"weights.source{i}" for i in range(3)]
    assert {k: v.item() for k, v in merger.model.weights.items()} != w0


def test_pearl_lora_reproduces_a_low_rank_task_vector(zoo):
    delta = torch.randn(6, 2) @ torch.randn(2, 9)
    b, a = transfer.pearl.lora_factors(delta, 4)
    assert torch.allclose(b @ a, delta, atol=1e-5)


def test_ensemble_votes(zoo):
    soft = transfer.create("ensemble", zoo.model(), zoo.target)
    hard = transfer.create("ensemble_hard", zoo.model(), zoo.target)
    for s in zoo.sources[:3]:
        soft.absorb(s), hard.absorb(s)
    x = zoo.target.test.images[:8].float()
    probs = torch.stack([m(x).softmax(-1) for m in soft.model.members]).mean(0)
    assert torch.allclose(soft.model(x).softmax(-1), probs, atol=1e-5)
    votes = torch.stack([m(x).argmax(-1) for m in hard.model.members])  # (K, N)
    majority = hard.model(x).argmax(-1)
    counts = torch.nn.functional.one_hot(votes, 4).sum(0)  # (N, C)
    assert torch.equal(counts.gather(1, majority[:, None]).squeeze(1), counts.max(1).values)


def test_fusion_is_the_mean_of_all_sources_before_training(zoo):
    merger = transfer.create("fusion", zoo.model(), zoo.target)
    for s in zoo.sources[:3]:
        merger.absorb(s)
    assert len(merger.sources) == 3  # all K resident: the O(K) memory of the baseline
    with LazyCheckpoint(zoo.sources[0]) as a, LazyCheckpoint(zoo.sources[1]) as b, LazyCheckpoint(zoo.sources[2]) as c:
        k = "features.0.weight"
        assert torch.allclose(merger.model.state_dict()[k], (a.get(k) + b.get(k) + c.get(k)) / 3)


def test_ties_trims_elects_and_averages_agreeing_entries():
    tvs = torch.tensor([[3.0, -1.0, 0.1, 2.0], [1.0, -4.0, 0.2, -3.0]])
    merged = ties_combine(tvs, density=0.5)  # keeps 2 of 4 per source: [3, _, _, 2] and [_, -4, _, -3]
    assert torch.allclose(merged, torch.tensor([3.0, -4.0, 0.0, -3.0]))


def test_opcm_projection_removes_the_principal_subspace():
    merged = torch.diag(torch.tensor([5.0, 1.0, 0.0]))
    new = torch.ones(3, 3)
    out = project_out(merged, new, alpha=0.5)  # the diagonal (and the leading directions below alpha) are removed
    assert torch.allclose(out[0, 0], torch.tensor(0.0), atol=1e-6) and out.abs().sum() > 0


def test_task_arithmetic_and_opcm_stream_from_the_base(zoo):
    for name in ("task_arithmetic", "opcm"):
        merger = transfer.create(name, zoo.model(), zoo.target, base=str(zoo.base), **FAST)
        transfer.run_sources(merger, zoo.sources[:3])
        assert merger.finish_log["epochs"] == 1 + 2 * 1  # the shared budget: initial + (K-1) fine-tunes


def test_training_free_merges_resume_by_replay_bitwise(zoo, tmp_path):
    for name in ("task_arithmetic", "pearl"):
        cfg = {**FAST, "base": str(zoo.base)}
        full = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / name / "full", **cfg)
        transfer.run_sources(full, zoo.sources[:3])
        killed = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / name / "killed", **cfg)
        for s in zoo.sources[:2]:
            killed.absorb(s)
        resumed = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / name / "killed", **cfg)
        transfer.run_sources(resumed, zoo.sources[:3], resume=True)
        a, b = full.model.state_dict(), resumed.model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
