"""Issue 22 §2: `transfer --resume` compares everything that decides the result (merge config, target data:
few-shot count, target, seed), and `sources --out <existing zoo>` with other settings is refused, one line each."""
from __future__ import annotations

import json

import pytest

from shiftkit import transfer
from shiftkit.cli import main
from shiftkit.data import DATASETS, register_dataset
from shiftkit.data.domains import few_shot
from shiftkit.errors import ConfigError

from transfer_fixtures import make_domain

if "tiny_transfer" not in DATASETS:
    @register_dataset("tiny_transfer")
    def _tiny(root=None, *, seed: int = 0):
        return [make_domain(f"bin{i}", 0.1 * i, n=160, seed=i) for i in range(4)]

FAST = {"initial_epochs": 1, "finetune_epochs": 1, "batch_size": 16}


def test_resume_refuses_other_target_data(zoo, tmp_path):
    a = few_shot(zoo.target, 20, seed=0)
    m = transfer.create("grasp", zoo.model(), a, run_dir=tmp_path, **FAST)
    m.absorb(zoo.sources[0])
    assert json.loads((tmp_path / "log.json").read_text())["target"]["train"] == 20
    same = transfer.create("grasp", zoo.model(), few_shot(zoo.target, 20, seed=0), run_dir=tmp_path, **FAST)
    assert same.resume() == [str(zoo.sources[0])]
    for other, what in ((few_shot(zoo.target, 30, seed=0), "target train: 20 then, 30 now"),
                        (few_shot(zoo.target, 20, seed=1), "target sha256"),
                        (zoo.domains[3], "target domain: 'bin4' then, 'bin3' now")):
        with pytest.raises(ConfigError, match=f"other target data .*{what}"):
            transfer.create("grasp", zoo.model(), other, run_dir=tmp_path, **FAST).resume()


def test_resume_names_the_config_keys_that_differ(zoo, tmp_path):
    transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path, **FAST).absorb(zoo.sources[0])
    with pytest.raises(ConfigError, match=r"another config \(seed: 0 then, 3 now; tau: 0\.3 then, 0\.5 now\)"):
        transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path, seed=3, tau=0.5, **FAST).resume()


def _cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    return e.value.code, err


def test_cli_resume_with_other_few_shot_and_existing_zoo(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    sources = ["sources", "--dataset", "tiny_transfer", "--target", "3", "--out", str(zoo), "--width", "4",
               "--base-epochs", "1", "--source-epochs", "1"]
    main(sources)
    before = (zoo / "zoo.json").read_bytes()
    main(sources)  # the same settings again: the zoo is reused as it is
    capsys.readouterr()
    code, err = _cli(sources[:-1] + ["2"], capsys)  # other settings over it: refused, nothing rebuilt
    assert code == 2 and len(err.splitlines()) == 1 and "source_epochs: built 1, asked 2" in err
    assert "not rebuilt" in err and (zoo / "zoo.json").read_bytes() == before
    args = ["transfer", "--method", "grasp", "--dataset", "tiny_transfer", "--target", "3", "--sources", str(zoo),
            "--out", str(tmp_path / "t"), "--few-shot", "30", "--set", "initial_epochs=1", "--set", "finetune_epochs=1"]
    main(args)
    capsys.readouterr()
    result = (tmp_path / "t" / "result.json").read_bytes()
    code, err = _cli(args[:-5] + ["40"] + args[-4:] + ["--resume"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "target train: 30 then, 40 now" in err
    assert (tmp_path / "t" / "result.json").read_bytes() == result  # the old result is kept as it was


def test_resume_refuses_a_source_file_that_changed(zoo, tmp_path):
    import shutil

    src = tmp_path / "src0.safetensors"
    shutil.copy(zoo.sources[0], src)
    m = transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path / "run", **FAST)
    m.absorb(src)
    assert transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path / "run", **FAST).resume() == [str(src)]
    shutil.copy(zoo.sources[1], src)  # the zoo rebuilt in place: same path, other weights
    with pytest.raises(ConfigError, match=r"source .*src0\.safetensors changed since this run absorbed it"):
        transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path / "run", **FAST).resume()
