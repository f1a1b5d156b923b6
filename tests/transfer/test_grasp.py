"""GRASP's alignment rule, its τ extremes, taylor streaming, self-merge and resume equality."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from shiftkit import checkpoints, transfer
from shiftkit.checkpoints import save_checkpoint
from shiftkit.data import ArrayDataset
from shiftkit.transfer import grasp as grasp_mod

from transfer_fixtures import FAST

NO_TRAIN = {"initial_epochs": 0, "finetune_epochs": 0, "batch_size": 10_000}  # one batch = all target train


def _grads(model, ds, mode="train"):
    """Independent reference: plain autograd of the mean loss on the whole set, BN in `mode`."""
    m = copy.deepcopy(model).train(mode == "train")
    loss = F.cross_entropy(m(ArrayDataset.to_float(ds.images)), ds.labels)
    return dict(zip([k for k, _ in m.named_parameters()], torch.autograd.grad(loss, list(m.parameters()))))


def _cos(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


def _mixed_source(zoo, tmp_path, theta):
    """A source whose tensors partly step down the target loss (aligned) and partly are scrambled."""
    g = _grads(theta, zoo.target.train)
    state = {k: v.clone() for k, v in theta.state_dict().items()}
    gen = torch.Generator().manual_seed(7)
    for i, (k, p) in enumerate(theta.named_parameters()):
        if i % 2:
            state[k] = p.detach() - 0.5 * g[k]
        else:
            state[k] = p.detach() + p.detach().std() * 3 * torch.randn(p.shape, generator=gen)
    path = tmp_path / "mixed.safetensors"
    save_checkpoint(path, state, metadata=checkpoints.model_metadata(theta))
    return path


def test_copies_exactly_the_tensors_with_cosine_above_tau(zoo, tmp_path):
    merger = transfer.create("grasp", zoo.model(), zoo.target, **NO_TRAIN)
    merger.absorb(zoo.sources[0])
    theta = copy.deepcopy(merger.model)
    src_path = _mixed_source(zoo, tmp_path, theta)
    source = copy.deepcopy(theta)
    checkpoints.load_checkpoint(src_path, source)
    g_t, g_s = _grads(theta, zoo.target.train), _grads(source, zoo.target.train, "eval")  # the authors' modes
    cos = {k: _cos(g_s[k], g_t[k]) for k in g_t}
    values = sorted(cos.values())
    gap, i = max((values[i + 1] - values[i], i) for i in range(2, len(values) - 3))  # a clear split mid-way
    tau = (values[i] + values[i + 1]) / 2
    assert gap > 0.01
    expected = {k for k, c in cos.items() if c > tau}
    assert 0 < len(expected) < len(cos)
    merger = transfer.create("grasp", copy.deepcopy(theta), zoo.target, tau=tau, **NO_TRAIN)
    merger.records = [{"source": "first", "stage": 0}]  # θ already holds the first source
    record = merger.absorb(src_path)
    assert set(record["transferred"]) == expected
    for k, p in merger.model.named_parameters():
        want = dict(source.named_parameters())[k] if k in expected else dict(theta.named_parameters())[k]
        assert torch.equal(p, want), k
        assert record["scores"][k] == pytest.approx(cos[k], abs=1e-4), k
    for k, b in merger.model.named_buffers():  # BN statistics are not copied by default
        assert torch.equal(b, dict(theta.named_buffers())[k])


def test_reference_takes_the_source_gradient_in_eval_mode(zoo, tmp_path):
    """The authors' modes: target gradient with batch statistics, source gradient with its running
    statistics; source_bn_mode="train" (the old behaviour) gives other cosines on a BN net."""
    theta = zoo.model()
    checkpoints.load_checkpoint(zoo.sources[0], theta)
    source = zoo.model()
    checkpoints.load_checkpoint(zoo.sources[-1], source)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in theta.modules())
    g_t = _grads(theta, zoo.target.train)
    cos = {mode: {k: _cos(g, g_t[k]) for k, g in _grads(source, zoo.target.train, mode).items()} for mode in ("eval", "train")}
    for mode in ("eval", "train"):
        merger = transfer.create("grasp", copy.deepcopy(theta), zoo.target, source_bn_mode=mode, **NO_TRAIN)
        merger.records = [{"source": "first", "stage": 0}]  # θ already holds the first source
        scores = merger.absorb(zoo.sources[-1])["scores"]
        other = cos["train" if mode == "eval" else "eval"]
        for k in cos[mode]:
            assert scores[k] == pytest.approx(cos[mode][k], abs=1e-4), (mode, k)
        assert max(abs(scores[k] - other[k]) for k in scores) > 0.05, mode  # the modes are not the same rule
    assert transfer.config_class("grasp")().source_bn_mode == "eval"


def test_copy_buffers_moves_bn_statistics_only_with_their_copied_layer(zoo, tmp_path):
    theta = zoo.model()
    checkpoints.load_checkpoint(zoo.sources[0], theta)
    source = zoo.model()
    checkpoints.load_checkpoint(zoo.sources[-1], source)
    for name, want_copy in (("grasp_copybuffers", True), ("grasp", False)):
        merger = transfer.create(name, copy.deepcopy(theta), zoo.target, **NO_TRAIN)
        merger.records = [{"source": "first", "stage": 0}]
        record = merger.absorb(zoo.sources[-1])
        copied = set(record["transferred"])
        assert 0 < len(copied) < len(record["scores"])  # some layers copied, some kept
        src_buf, old_buf = dict(source.named_buffers()), dict(theta.named_buffers())
        for k, b in merger.model.named_buffers():
            layer_copied = any(c.rsplit(".", 1)[0] == k.rsplit(".", 1)[0] for c in copied)
            assert torch.equal(b, src_buf[k] if want_copy and layer_copied else old_buf[k]), (name, k)
        assert bool(record.get("buffers_copied")) == want_copy


@pytest.mark.parametrize("name, everything", [("sequential_all", True), ("sequential_none", False)])
def test_tau_extremes_copy_all_or_nothing(zoo, name, everything):
    merger = transfer.create(name, zoo.model(), zoo.target, **NO_TRAIN)
    merger.absorb(zoo.sources[0])
    theta = copy.deepcopy(merger.model.state_dict())
    record = merger.absorb(zoo.sources[1])
    assert record["fraction_transferred"] == (1.0 if everything else 0.0)
    with checkpoints.LazyCheckpoint(zoo.sources[1]) as src:
        for k, p in merger.model.named_parameters():
            assert torch.equal(p, src.get(k) if everything else theta[k])


def test_source_merged_with_itself_changes_nothing(zoo, tmp_path):
    merger = transfer.create("grasp", zoo.model(), zoo.target, **{**FAST, "finetune_epochs": 0})
    merger.absorb(zoo.sources[0])
    save_checkpoint(tmp_path / "self.safetensors", merger.model)
    before = copy.deepcopy(merger.model.state_dict())
    merger.absorb(tmp_path / "self.safetensors")
    assert all(torch.equal(before[k], v) for k, v in merger.model.state_dict().items())


def test_taylor_streams_the_source_and_follows_its_rule(zoo, monkeypatch):
    merger = transfer.create("grasp_taylor", zoo.model(), zoo.target, **NO_TRAIN)
    merger.absorb(zoo.sources[0])
    theta = copy.deepcopy(merger.model)
    g_t = _grads(theta, zoo.target.train)
    with checkpoints.LazyCheckpoint(zoo.sources[1]) as src:
        expected = {k for k, p in theta.named_parameters() if float((g_t[k] * (src.get(k) - p.detach())).sum()) < 0}
    reads = []
    real_get = checkpoints.LazyCheckpoint.get
    monkeypatch.setattr(checkpoints.LazyCheckpoint, "get", lambda self, name: reads.append(name) or real_get(self, name))

    def forbidden(*a, **k):
        raise AssertionError("taylor mode must not load a whole source")

    monkeypatch.setattr(grasp_mod.BaseMerger, "load_source", forbidden)
    monkeypatch.setattr(checkpoints, "load_checkpoint", forbidden)
    monkeypatch.setattr("safetensors.torch.load_file", forbidden)
    record = merger.absorb(zoo.sources[1])
    assert set(record["transferred"]) == expected and 0 < len(expected)
    params = [k for k, _ in theta.named_parameters()]
    assert reads[-len(params):] == params  # the transfer pass: one tensor at a time, each once


@pytest.mark.parametrize("name", ["grasp", "grasp_taylor"])
def test_resume_after_a_kill_is_bitwise_equal(zoo, tmp_path, name):
    full = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / "full", **FAST)
    transfer.run_sources(full, zoo.sources[:3])
    first = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / "killed", **FAST)
    for s in zoo.sources[:2]:
        first.absorb(s)
    del first  # the process dies here
    torch.manual_seed(123)  # a fresh process: other random init, other global RNG state
    resumed = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / "killed", **FAST)
    transfer.run_sources(resumed, zoo.sources[:3], resume=True)
    assert [r["source"] for r in resumed.records] == [str(s) for s in zoo.sources[:3]]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_sources_or_config(zoo, tmp_path):
    m = transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path, **FAST)
    m.absorb(zoo.sources[0])
    with pytest.raises(transfer.base.ConfigError, match="prefix"):
        transfer.run_sources(transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path, **FAST),
                             zoo.sources[1:3], resume=True)
    with pytest.raises(transfer.base.ConfigError, match="config"):
        transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path, tau=0.5, **FAST).resume()


@pytest.mark.parametrize("name", ["grasp_channel", "grasp_multibatch", "grasp_valgate", "grasp_stagegate"])
def test_variants_log_their_decisions(zoo, name):
    merger = transfer.create(name, zoo.model(), zoo.target, **FAST)
    transfer.run_sources(merger, zoo.sources[:2])
    r = merger.records[1]
    assert 0.0 <= r["fraction_transferred"] <= 1.0 and r["val_before"] and r["val_after"]
    assert r["stage_best_epoch"] == 0 and "scores" in r


def test_stage_gate_reverts_exactly_the_stages_that_raise_val_loss(zoo, tmp_path):
    """A scrambled source copied whole (τ=−1) ruins the target; the gate must restore the pre-absorb state bit for bit."""
    merger = transfer.create("grasp", zoo.model(), zoo.target, tau=-1.0, stage_gate=True, **FAST)
    merger.absorb(zoo.sources[0])
    good = {k: v.clone() for k, v in merger.model.state_dict().items()}
    state = {k: v.clone() for k, v in good.items()}
    gen = torch.Generator().manual_seed(0)
    for k, v in state.items():
        if v.is_floating_point() and "running" not in k:
            state[k] = v + 5 * v.std().nan_to_num() * torch.randn(v.shape, generator=gen)
    bad = tmp_path / "scrambled.safetensors"
    save_checkpoint(bad, state, metadata={"arch": "small_cnn", "num_classes": "4"})
    r = merger.absorb(bad)
    assert r["reverted"] and r["val_after_stage"]["loss"] > r["val_before"]["loss"]
    after = merger.model.state_dict()
    assert all(torch.equal(after[k], good[k]) for k in good)
    assert r["val_after"] == r["val_before"] and r["epochs"] == FAST["finetune_epochs"]  # budget spent all the same
    for r in [merger.absorb(s) for s in zoo.sources[1:3]]:  # the rule, on real sources either way
        assert r["reverted"] == (r["val_after_stage"]["loss"] > r["val_before"]["loss"])


def test_alignment_batch_larger_than_the_set_is_the_set_once(zoo):
    ds = zoo.target.train
    (x, y), = grasp_mod.alignment_batches(ds, 1, 10 * len(ds), seed=3)
    assert len(y) == len(ds) and sorted(y.tolist()) == sorted(ds.labels.tolist())
    assert sum(len(b[1]) for b in grasp_mod.alignment_batches(ds, 3, len(ds), seed=3)) == 3 * len(ds)  # wraps across batches


def test_val_metrics_are_reused_only_while_the_model_is_unchanged(zoo, monkeypatch):
    """A stage's `before` is the previous stage's `after` without a second val pass; any in-place change
    (a copy, an optimizer step, load_state_dict) forces a fresh pass, and the reused value equals a fresh one."""
    merger = transfer.create("grasp", zoo.model(), zoo.target, **FAST)
    merger.absorb(zoo.sources[0])
    calls = []
    real = transfer.base._metrics
    monkeypatch.setattr(transfer.base, "_metrics", lambda m, ds: calls.append(1) or real(m, ds))
    first = merger.val_metrics()
    assert calls == []  # the stage's own `after` pass is reused: nothing changed since
    assert first == real(merger.model, zoo.target.val)  # and it equals a fresh pass
    snapshot = copy.deepcopy(merger.model.state_dict())
    with torch.no_grad():
        next(merger.model.parameters()).add_(1.0)
    changed = merger.val_metrics()
    assert len(calls) == 1 and changed == real(merger.model, zoo.target.val) and changed != first
    merger.model.load_state_dict(snapshot)
    assert merger.val_metrics() == first and len(calls) == 2
    assert merger.val_metrics() == first and len(calls) == 2
    r = merger.absorb(zoo.sources[1])  # before = the cached value; the copies and fine-tuning change the model
    assert r["val_before"] == first and len(calls) == 4  # after_copy, after_stage: two fresh passes, not three
    assert r["val_after"] == real(merger.model, zoo.target.val)


def test_fit_with_zero_epochs_only_applies_masks(zoo):
    from shiftkit.train import TrainConfig, fit

    net = zoo.model()
    before = copy.deepcopy(net.state_dict())
    w = "features.0.weight"
    mask = torch.rand(net.state_dict()[w].shape, generator=torch.Generator().manual_seed(0)) > 0.5
    r = fit(net, zoo.target.train, zoo.target.val, TrainConfig(epochs=0), masks={w: mask})
    after = net.state_dict()
    assert r.history == [] and not net.training
    assert torch.equal(after[w], before[w] * mask)
    assert all(torch.equal(after[k], v) for k, v in before.items() if k != w)
