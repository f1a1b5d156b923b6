"""Untrusted text (paths, metadata, tensor names) prints literally - rich markup in it never raises
MarkupError, deep nesting never RecursionError - and machine-readable JSON stays one line in a pipe."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from shiftkit import models
from shiftkit.checkpoints import save_checkpoint
from shiftkit.cli import main
from shiftkit.cli._common import plain, say, table

MARKUP = "[/bold] [red]x[/] [link=file:///etc]y"


def _deep(levels: int) -> list:
    v: list = []
    for _ in range(levels):  # built iteratively: deeper than any recursive encoder or printer can go
        v = [v]
    return v


def test_markup_prints_literally(capsys):
    say(MARKUP)
    table([{"name": MARKUP, "value": 1.5}], title=MARKUP)
    out = capsys.readouterr().out
    assert out.count("[/bold]") == 3 and "[red]x[/]" in out


def test_deep_values_print_bounded(capsys):
    deep = _deep(100_000)
    text = plain(deep)
    assert text.startswith("[[[") and len(text) < 200
    say(deep)
    table([{"key": "config", "value": deep}], title="metadata")
    assert "config" in capsys.readouterr().out
    assert plain({"a": [1, 2]}) == '{"a": [1, 2]}' and plain("x" * 50, limit=10) == "x" * 9 + "…"


def test_inspect_hostile_names_and_metadata(tmp_path, capsys):
    folder = tmp_path / "[bold]run"  # a path cannot hold '/', but an opening tag would style (and hide) itself
    folder.mkdir()
    path = folder / "[red]m.safetensors"
    deep = "[" * 5000 + "]" * 5000  # JSON nested past the decoder's recursion limit
    save_file({MARKUP: torch.zeros(2, 3), "w[/i]": torch.ones(4, 4)}, str(path),
              metadata={"note": MARKUP, "config": deep, "arch": "[/x]"})
    main(["inspect", str(path)])
    out = capsys.readouterr().out
    assert "[bold]run/[red]m.safetensors" in out and "[/bold]" in out and "w[/i]" in out and "arch: [/x]" in out
    main(["inspect", str(path), "--json"])
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and json.loads(line)["metadata"]["note"] == MARKUP


def test_json_output_is_one_line_in_a_pipe(tmp_path):
    """`shiftkit import` prints its report as JSON: one line even when longer than 80 columns."""
    net = models.create("small_cnn", num_classes=10, in_chans=1)
    src = tmp_path / ("a_rather_long_folder_name_" * 4) / "weights.pt"
    src.parent.mkdir()
    torch.save(net.state_dict(), src)
    out = tmp_path / "imported.safetensors"
    p = subprocess.run([sys.executable, "-m", "shiftkit", "import", str(src), "--arch", "small_cnn", "--in-chans", "1",
                        "--num-classes", "10", "--out", str(out)], capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 80 and json.loads(lines[0])["checkpoint"] == str(out)


def test_tables_are_not_cut_in_a_pipe(tmp_path):
    """A wide table (long path in the title, long tensor names) keeps every cell whole off a terminal."""
    net = models.create("small_cnn", num_classes=10, in_chans=1, width=4)
    path = tmp_path / ("long_" * 30 + ".safetensors")
    save_checkpoint(path, net)
    p = subprocess.run([sys.executable, "-m", "shiftkit", "inspect", str(path)], capture_output=True, text=True,
                       env=_env())
    assert p.returncode == 0, p.stderr
    assert str(path) in p.stdout and "…" not in p.stdout


def _env() -> dict:
    import os

    env = dict(os.environ)
    env.pop("COLUMNS", None)  # rich's default off a terminal: 80 columns
    return env


@pytest.mark.parametrize("argv, hint", [(["train", "--model", "resnet2"], "did you mean 'resnet20'"),
                                        (["transfer", "--method", "grapsp", "--target", "1"], "did you mean 'grasp'"),
                                        (["run", "cfg.yaml", "--epoch", "1"], "did you mean --epochs"),
                                        (["run", "cfg.yaml", "--set", "data.sed=1"], "did you mean 'seed'"),
                                        (["run", "cfg.yaml", "--set", "method.kind=prune", "--set",
                                          "method.options.hybrid_spilt=2"], "did you mean 'hybrid_split'")])
def test_misspelled_names_suggest_the_closest(tmp_path, monkeypatch, capsys, argv, hint):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text("budget: {epochs: 1}\n")
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and hint in err and len(err.splitlines()) == 1
