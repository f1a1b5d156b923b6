"""Greedy soup and the ranked merger: their defining properties, and k-fold selection."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from shiftkit import checkpoints, transfer
from shiftkit.checkpoints import save_checkpoint
from shiftkit.train import TrainConfig, fit

NO_TRAIN = {"initial_epochs": 0, "finetune_epochs": 0, "batch_size": 16}


@pytest.fixture(scope="module")
def good(zoo, tmp_path_factory):
    """Sources that are useful on the target (the tiny zoo's are near chance there): the base tuned
    on target-like data for a few epochs, each from its own seed (a soup of them can help)."""
    out, paths = tmp_path_factory.mktemp("good"), []
    for i in range(3):
        net = zoo.model()
        checkpoints.load_checkpoint(zoo.base, net)
        fit(net, zoo.target.train, None, TrainConfig(epochs=6, lr=3e-3, batch_size=16, seed=i))
        paths.append(out / f"good{i}.safetensors")
        save_checkpoint(paths[-1], net)
    return paths


def _harmful_source(zoo, tmp_path, src):
    """A source whose classifier points the wrong way (negated, ×3): it ranks last and averaging it
    into a soup cancels the soup's classifier."""
    net = zoo.model()
    checkpoints.load_checkpoint(src, net)
    last = [k for k, _ in net.named_parameters()][-2:]  # the final Linear's weight and bias
    state = {k: -3 * v if k in last else v for k, v in net.state_dict().items()}
    path = tmp_path / "harmful.safetensors"
    save_checkpoint(path, state, metadata=checkpoints.model_metadata(net))
    return path


def _states(paths, zoo):
    out = []
    for p in paths:
        net = zoo.model()
        checkpoints.load_checkpoint(p, net)
        out.append(net.state_dict())
    return out


def test_greedy_soup_rejects_a_harmful_source_and_is_the_mean_of_the_accepted(zoo, good, tmp_path):
    bad = _harmful_source(zoo, tmp_path, good[-1])
    merger = transfer.create("greedy_soup", zoo.model(), zoo.target, **NO_TRAIN)
    for p in [bad, *good]:
        merger.absorb(p)
    merger.finish()
    log = merger.finish_log
    assert log["order"][0] != str(bad) and str(bad) not in log["accepted"]  # ranked last, then rejected
    assert {c["source"] for c in log["candidates"] if not c["accepted"]} >= {str(bad)}
    accepted = _states([p for p in log["accepted"]], zoo)
    assert len(accepted) >= 2  # the test means something only if the soup averages several sources
    for k, v in merger.model.state_dict().items():
        if v.is_floating_point():
            want = torch.stack([s[k].double() for s in accepted]).mean(0)
            torch.testing.assert_close(v.double(), want, rtol=0, atol=1e-6, msg=k)
    losses = [c["soup_val_loss"] for c in log["candidates"]]
    assert all(c["accepted"] == (c["soup_val_loss"] <= min([sorted(merger.scores)[0][1]] + [d["soup_val_loss"] for d in log["candidates"][:i] if d["accepted"]]))
               for i, c in enumerate(log["candidates"])) and losses


def test_ranked_starts_from_the_best_single_source_and_gates_stages(zoo, good):
    bss = transfer.create("best_single_source", zoo.model(), zoo.target, **NO_TRAIN)
    ranked = transfer.create("ranked", zoo.model(), zoo.target, **NO_TRAIN)
    for p in [zoo.sources[0], *good]:
        bss.absorb(p)
        ranked.absorb(p)
    chosen = [r["source"] for r in bss.records if r["chosen"]][-1]
    for k, v in ranked._scratch.state_dict().items():  # the scoring pass holds no source besides the scratch
        assert v.shape == ranked.model.state_dict()[k].shape
    ranked.finish()
    assert ranked.finish_log["order"][0] == chosen
    stages = ranked.finish_log["stages"]
    assert all(s["reverted"] == (s["val_after_stage"]["loss"] > s["val_before"]["loss"]) for s in stages[1:])
    # the stage gate never ends a stage above where it began: val loss is non-increasing over stages
    ends = [s["val_after"]["loss"] for s in stages]
    assert all(b <= a + 1e-9 for a, b in zip(ends, ends[1:]))


def test_k_fold_selection_scores_on_every_labelled_target_image(zoo):
    merger = transfer.create("best_single_source", zoo.model(), zoo.target, val_folds=4, **NO_TRAIN)
    m = merger.selection_metrics()
    n = len(zoo.target.train) + len(zoo.target.val)
    assert len(m["folds"]) == 4 and sum(len(f) for f in merger.folds()) == n
    pooled = torch.cat([f.labels for f in merger.folds()])
    assert sorted(pooled.tolist()) == sorted(torch.cat([zoo.target.train.labels, zoo.target.val.labels]).tolist())
    assert abs(m["accuracy"] - sum(f["accuracy"] for f in m["folds"]) / 4) < 1e-12


def test_k_fold_fine_tuning_keeps_the_epoch_the_folds_choose_trained_on_every_image(zoo, good):
    from shiftkit.transfer._kfold import pool

    merger = transfer.create("best_single_source", zoo.model(), zoo.target, val_folds=3, initial_epochs=4, batch_size=16)
    merger.absorb(zoo.sources[0])
    start = copy.deepcopy(merger.model)
    cfg = merger.train_config(4, 1)
    folds = merger.folds()
    curves = []
    for i, held in enumerate(folds):  # independent re-computation of the fold curves
        rest = [f for j, f in enumerate(folds) if j != i]
        net = copy.deepcopy(start)
        res = fit(net, pool(rest[0], rest[1]), held, dataclasses.replace(cfg, select="last"))
        curves.append([(h["val_accuracy"], h["val_loss"]) for h in res.history])
    mean = [(sum(c[e][0] for c in curves) / 3, sum(c[e][1] for c in curves) / 3) for e in range(4)]
    best = max(range(4), key=lambda e: (mean[e][0], -mean[e][1], -e))
    merger.finish()
    assert merger.finish_log["best_epoch"] == best
    kept, net = {}, copy.deepcopy(start)  # the same schedule on every labelled image; the kept model is its epoch `best`
    fit(net, pool(pool(folds[0], folds[1]), folds[2]), None, dataclasses.replace(cfg, select="last"),
        on_epoch=lambda e, _: kept.update(state=copy.deepcopy(net.state_dict())) if e == best else None)
    for k, v in merger.model.state_dict().items():
        assert torch.equal(v, kept["state"][k]), k
    assert len(pool(pool(folds[0], folds[1]), folds[2])) == len(zoo.target.train) + len(zoo.target.val)


def test_bn_recalibrate_judges_every_candidate_with_target_statistics(zoo, good, tmp_path):
    """A source whose BN running statistics are ruined scores badly as it is, and exactly like its intact
    twin once the statistics are re-estimated on the target's train images (weights untouched)."""
    from shiftkit.train import recalibrate_bn

    net = zoo.model()
    checkpoints.load_checkpoint(good[0], net)
    state = {k: v + 3 * v.abs().mean() + 1 if "running_mean" in k else v * 0.01 if "running_var" in k else v
             for k, v in net.state_dict().items()}
    ruined = tmp_path / "ruined_bn.safetensors"
    save_checkpoint(ruined, state, metadata=checkpoints.model_metadata(net))
    plain = transfer.create("best_single_source", zoo.model(), zoo.target, **NO_TRAIN)
    recal = transfer.create("best_single_source_bnrecal", zoo.model(), zoo.target, **NO_TRAIN)
    scores = {name: [m.absorb(p)["val_loss"] for p in (good[0], ruined)] for name, m in (("plain", plain), ("recal", recal))}
    assert scores["plain"][1] != scores["plain"][0]  # as they are, the ruined statistics change the score
    assert scores["recal"][0] == scores["recal"][1]  # the same weights, the same target statistics
    recalibrate_bn(net, zoo.target.train)
    assert recal.val_metrics(net)["loss"] == scores["recal"][0]  # the statistics are the target train images'
    soup = transfer.create("greedy_soup_bnrecal", zoo.model(), zoo.target, **NO_TRAIN)
    for p in good:
        soup.absorb(p)
    soup.finish()  # the soup handed to fine-tuning carries target statistics, whatever was rejected last
    want = copy.deepcopy(soup.model)
    recalibrate_bn(want, zoo.target.train)
    assert all(torch.equal(a, b) for a, b in zip(soup.model.state_dict().values(), want.state_dict().values()))
