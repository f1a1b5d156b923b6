"""Issue 22 §2: a run whose loss or weights become NaN/Inf stops (or keeps its best finite epoch); a model
with NaN/Inf logits gets scores marked invalid; nothing non-finite is saved as a result."""
import json

import pytest
import torch

from shiftkit import models
from shiftkit.checkpoints import save_checkpoint
from shiftkit.cli import main
from shiftkit.errors import ConfigError, DivergedError
from shiftkit.train import TrainConfig, evaluate, fit

CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


def _net(seed=0):
    torch.manual_seed(seed)
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4)


def _cli(args, root, capsys, monkeypatch):
    monkeypatch.setenv("SHIFTKIT_DATA", str(root))
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_huge_lr_raises_naming_the_epoch(tiny_dataset):
    net = _net()
    with pytest.raises(DivergedError, match=r"diverged in epoch 1/3: .*(loss is nan|NaN/Inf).*lr 1e\+06"):
        fit(net, tiny_dataset, tiny_dataset, TrainConfig(epochs=3, batch_size=32, lr=1e6, progress=False))


def test_keep_best_restores_the_last_finite_best_epoch(tiny_dataset):
    """Epoch 1 trains normally; then the weights are blown up from inside the loop (a divergence in epoch 2)."""
    net, snap = _net(), {}
    calls = {"n": 0}
    opt_step = torch.optim.AdamW.step

    def step(self, *a, **k):  # after epoch 1's 7 steps, every step writes inf into one weight
        out = opt_step(self, *a, **k)
        calls["n"] += 1
        if calls["n"] > 7:
            self.param_groups[0]["params"][0].data.fill_(float("inf"))
        return out

    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False, on_diverge="keep_best", select="last")
    torch.optim.AdamW.step = step
    try:
        with pytest.warns(UserWarning, match=r"diverged in epoch 2/3.*kept epoch 1"):
            res = fit(net, tiny_dataset, tiny_dataset, cfg,
                      on_epoch=lambda e, r: snap.setdefault(e, {k: v.clone() for k, v in net.state_dict().items()}))
    finally:
        torch.optim.AdamW.step = opt_step
    assert len(res.history) == 1 and res.best_epoch == 0
    assert list(snap) == [0] and all(torch.equal(v, snap[0][k]) for k, v in net.state_dict().items())
    assert all(v.isfinite().all() for v in net.state_dict().values() if v.is_floating_point())


def test_keep_best_without_a_finite_epoch_still_raises(tiny_dataset):
    with pytest.raises(DivergedError, match="no finite validated epoch"):
        fit(_net(), tiny_dataset, None, TrainConfig(epochs=2, batch_size=32, lr=1e6, progress=False,
                                                   on_diverge="keep_best"))


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1.0, 0.0])
def test_train_config_rejects_non_finite_lr(lr):
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=lr)


def test_save_refuses_non_finite_weights(tmp_path):
    net = _net()
    with torch.no_grad():
        net.features[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(DivergedError, match=r"m\.safetensors: not written: tensor 'features\.0\.weight'"):
        save_checkpoint(tmp_path / "m.safetensors", net)
    assert not (tmp_path / "m.safetensors").exists()


def test_evaluate_marks_non_finite_logits_invalid(tiny_dataset):
    net = _net()
    normal = evaluate(net, tiny_dataset)
    assert "valid" not in normal and "nonfinite" not in normal  # a normal result keeps its keys (and bytes)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("weight"):
                p.mul_(1e20)
    m = evaluate(net, tiny_dataset)
    assert m["valid"] is False and m["nonfinite"] == len(tiny_dataset)


def test_cli_train_huge_lr_exit_2_one_line_no_model(tmp_path, fmnist_root, capsys, monkeypatch):
    out = tmp_path / "m.safetensors"
    code, _, err = _cli(["train", "--lr", "1e6", "--epochs", "2", "--out", str(out)], fmnist_root, capsys, monkeypatch)
    errors = [l for l in err.splitlines() if l.startswith("shiftkit: error:")]
    assert code == 2 and len(errors) == 1 and "diverged in epoch 1/2" in errors[0] and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "m" / "result.json").exists()


def test_cli_eval_says_scores_are_invalid(tmp_path, fmnist_root, capsys, monkeypatch):
    net = models.create("small_cnn", num_classes=10, in_chans=1)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("weight"):
                p.mul_(1e18)  # finite, but the logits overflow
    save_checkpoint(tmp_path / "huge.safetensors", net)
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    main(["eval", str(tmp_path / "huge.safetensors"), "--dataset", "driftfmnist"])
    out = capsys.readouterr().out
    assert "bin0 (INVALID)" in out and "scores INVALID on bin0" in out


def test_run_records_invalid_scores(tmp_path, fmnist_root, monkeypatch):
    from shiftkit.config import parse_experiment
    from shiftkit.experiment import run_experiment

    net = models.create("small_cnn", num_classes=10, in_chans=1)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("weight"):
                p.mul_(1e18)
    save_checkpoint(tmp_path / "huge.safetensors", net)
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    exp = parse_experiment({"method": {"kind": "prune", "name": "magnitude", "sparsity": 0.5,
                                       "checkpoint": str(tmp_path / "huge.safetensors")},
                            "budget": {"epochs": 0}, "out": str(tmp_path / "p")})
    with pytest.warns(UserWarning, match="scores invalid on bin0"):
        r = run_experiment(exp, progress=False)
    saved = json.loads((tmp_path / "p" / "result.json").read_text())
    assert r["test"]["valid"] is False and "bin0" in saved["invalid_scores"]


def test_budget_on_diverge_reaches_fit_and_default_dumps_unchanged():
    from shiftkit.config import parse_experiment
    from shiftkit.experiment import _train_config

    default = parse_experiment({})
    assert "on_diverge" not in default.dump()["budget"]  # results of existing configs keep their bytes
    assert _train_config(default, progress=False).on_diverge == "error"
    keep = parse_experiment({"budget": {"on_diverge": "keep_best"}})
    assert keep.dump()["budget"]["on_diverge"] == "keep_best" and parse_experiment(keep.dump()) == keep
    assert _train_config(keep, progress=False).on_diverge == "keep_best"
    with pytest.raises(ConfigError, match="budget.on_diverge"):
        parse_experiment({"budget": {"on_diverge": "ignore"}})


def test_divergence_from_huge_starting_weights_says_so(tiny_dataset):
    """A merge with a huge scale hands fit finite weights that overflow: the error names their size."""
    net = _net()
    with torch.no_grad():
        net.features[0].weight.mul_(1e30)
    with pytest.raises(DivergedError, match=r"largest starting weight \d\.\d+e\+29.*a merge's scale"):
        fit(net, tiny_dataset, tiny_dataset, CFG)


def test_lr_grid_leaves_a_diverging_lr_out(tmp_path, fmnist_root, monkeypatch):
    from shiftkit.config import parse_experiment
    from shiftkit.experiment import run_experiment

    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    exp = parse_experiment({"budget": {"epochs": 1, "lr_grid": [1e-3, 1e6]}, "eval": {"domains": False},
                            "out": str(tmp_path / "g")})
    with pytest.warns(UserWarning, match=r"lr 1e\+06 left out: training diverged"):
        r = run_experiment(exp, progress=False)
    assert r["lr_chosen"] == 1e-3 and r["lr_diverged"] == ["1000000.0"]
    assert r["val_accuracy_by_lr"]["1000000.0"] is None
    bad = parse_experiment({"budget": {"epochs": 1, "lr_grid": [1e6, 1e7]}, "out": str(tmp_path / "h")})
    with pytest.raises(DivergedError, match="every learning rate diverged"):
        run_experiment(bad, progress=False)
