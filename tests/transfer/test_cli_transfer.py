"""`shiftkit sources` and `shiftkit transfer` end to end on a tiny registered dataset."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shiftkit.cli import app, main
from shiftkit.data import DATASETS, register_dataset

from transfer_fixtures import make_domain

if "tiny_transfer" not in DATASETS:
    @register_dataset("tiny_transfer")
    def _tiny(root=None, *, seed: int = 0):
        return [make_domain(f"bin{i}", 0.1 * i, n=160, seed=i) for i in range(4)]


def test_sources_then_transfer_then_resume(tmp_path):
    zoo = tmp_path / "zoo"
    main(["sources", "--dataset", "tiny_transfer", "--target", "3", "--out", str(zoo), "--width", "4",
          "--base-epochs", "1", "--source-epochs", "1"])
    manifest = json.loads((zoo / "zoo.json").read_text())
    assert [e["domain"] for e in manifest["sources"]] == ["bin0", "bin1", "bin2"]
    args = ["transfer", "--method", "grasp", "--dataset", "tiny_transfer", "--target", "3", "--sources", str(zoo),
            "--out", str(tmp_path / "t"), "--few-shot", "30", "--set", "initial_epochs=1", "--set", "finetune_epochs=1"]
    main(args)
    result = json.loads((tmp_path / "t" / "result.json").read_text())
    assert len(result["records"]) == 3 and 0 <= result["test"]["accuracy"] <= 1
    main(args + ["--resume"])  # everything already absorbed: resumes to the same model
    again = json.loads((tmp_path / "t" / "result.json").read_text())
    assert again["test"] == result["test"]


def test_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["transfer", "--method", "nope", "--dataset", "tiny_transfer", "--target", "3", "--sources", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "valid names" in err and "grasp" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["transfer", "--method", "grasp", "--dataset", "tiny_transfer", "--target", "3", "--sources", str(tmp_path)])
    assert "zoo.json" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["sources", "transfer", "transfer-methods"])
def test_help_has_an_example(cmd):
    out = CliRunner().invoke(app, [cmd, "--help"]).output
    assert "Example: shiftkit" in out
