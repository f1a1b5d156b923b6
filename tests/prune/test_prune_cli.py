"""`shiftkit prune` end to end on a tiny registered dataset; help shows an example; bad input exits 2."""
from __future__ import annotations

import pytest
import torch
from prune_fixtures import make_data
from typer.testing import CliRunner

from shiftkit import prune
from shiftkit.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from shiftkit.cli import app, main
from shiftkit.data import DATASETS, Domain, register_dataset

NAME = "prune_cli_tiny"
if NAME not in DATASETS:
    @register_dataset(NAME)
    def _tiny(root=None, *, seed: int = 0) -> list[Domain]:
        return [Domain("clean", make_data(80), make_data(40, seed=1), make_data(40, seed=2)),
                Domain("shifted", make_data(80, seed=3), make_data(40, seed=4), make_data(40, seed=5))]


@pytest.fixture
def dense(tmp_path, tiny_cnn):
    path = tmp_path / "dense.safetensors"
    save_checkpoint(path, tiny_cnn)
    return path


@pytest.mark.parametrize("args", [["--method", "gcnet", "--hybrid-split", "2", "--calib-domain", "1"],
                                  ["--method", "magnitude", "--scope", "layerwise", "--steps", "2"],
                                  ["--method", "random", "--granularity", "connection", "--keep-first"],
                                  ["--method", "gcnet", "--bn-recalibrate"]])
def test_prune_writes_a_sparse_checkpoint(dense, tmp_path, tiny_cnn, args):
    out = tmp_path / "p.safetensors"
    res = CliRunner().invoke(app, ["prune", str(dense), "--sparsity", "0.8", "--dataset", NAME, "--finetune-epochs", "1",
                                   "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    assert abs(float(read_metadata(out)["sparsity"]) - 0.8) < 0.01
    load_checkpoint(out, tiny_cnn)
    assert abs(prune.sparsity_report(tiny_cnn)[-1]["sparsity"] - 0.8) < 0.01
    res = CliRunner().invoke(app, ["eval", str(out), "--dataset", NAME])
    assert res.exit_code == 0 and "shifted" in res.output


def test_eval_adapt_bn_leaves_the_checkpoint_alone(dense):
    before = dense.read_bytes()
    plain = CliRunner().invoke(app, ["eval", str(dense), "--dataset", NAME])
    adapted = CliRunner().invoke(app, ["eval", str(dense), "--dataset", NAME, "--adapt-bn"])
    row = lambda res, name: next(ln for ln in res.output.splitlines() if f" {name} " in ln)  # noqa: E731
    assert adapted.exit_code == 0 and "AdaBN" in adapted.output
    assert row(plain, "shifted") != row(adapted, "shifted")  # re-estimated BN statistics changed the numbers
    assert dense.read_bytes() == before


def test_help_shows_an_example():
    res = CliRunner().invoke(app, ["prune", "--help"])
    assert res.exit_code == 0 and "Example: shiftkit prune" in res.output


@pytest.mark.parametrize("args,msg", [(["--sparsity", "1.2"], "--sparsity=1.2"),
                                      (["--method", "magnitude", "--reading", "parent"], "unknown option"),
                                      (["--method", "obd"], "valid names")])
def test_bad_input_is_one_line_and_exit_2(dense, args, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prune", str(dense), "--dataset", NAME, *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_prune_defaults_match_the_benchmarks_and_report_shifted_accuracy(dense, tmp_path, tiny_cnn):
    """Defaults: first and last layers kept dense, every domain tested (the shifted ones reported)."""
    import json

    out = tmp_path / "d.safetensors"
    res = CliRunner().invoke(app, ["prune", str(dense), "--method", "magnitude", "--sparsity", "0.5", "--dataset", NAME,
                                   "--finetune-epochs", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads(res.output.strip().splitlines()[-1])
    assert record["shifted_mean"] is not None  # the shifted domain was evaluated and reported
    load_checkpoint(out, tiny_cnn)
    layers = prune.sparsity_report(tiny_cnn)[:-1]  # the last row is the total
    assert layers[0]["sparsity"] == 0 and layers[-1]["sparsity"] == 0 and layers[1]["sparsity"] > 0
    assert "driftfmnist" in CliRunner().invoke(app, ["prune", "--help"]).output


def test_structured_prune_from_the_cli_is_smaller_and_evaluates(dense, tmp_path):
    import json

    from shiftkit.api import load_model
    from shiftkit.prune.structured import count_macs_params

    out = tmp_path / "s.safetensors"
    res = CliRunner().invoke(app, ["prune", str(dense), "--structured", "--speedup", "1.5", "--method", "l2",
                                   "--dataset", NAME, "--finetune-epochs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads(res.output.strip().splitlines()[-1])
    assert record["speedup"] >= 1.5 and record["params"][1] < record["params"][0]
    net = load_model(out)  # narrower widths rebuilt from the file alone
    macs, params = count_macs_params(net, torch.zeros(1, *make_data(2).shape))
    assert (macs, params) == (record["macs"][1], record["params"][1])
    assert out.stat().st_size < dense.stat().st_size
    res = CliRunner().invoke(app, ["eval", str(out), "--dataset", NAME])
    assert res.exit_code == 0 and "shifted" in res.output


@pytest.mark.parametrize("args, message", [
    (["--structured"], "exactly one of speedup"),
    (["--speedup", "2.0"], "need structured"),
    (["--structured", "--speedup", "0.5"], "greater than 1"),
    (["--structured", "--speedup", "2", "--method", "synflow"], "channel importance"),
])
def test_structured_prune_bad_options_one_line_nothing_written(dense, tmp_path, capsys, args, message):
    out = tmp_path / "bad.safetensors"
    with pytest.raises(SystemExit) as e:
        main(["prune", str(dense), "--dataset", NAME, "--out", str(out), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err
    assert not out.exists()
