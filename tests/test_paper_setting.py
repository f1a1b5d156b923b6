"""examples/paper_setting.yaml end to end, at 64 px on a generated folder of periods: a zoo fine-tuned from a
pretrained-like timm file with augmentation, merged by GRASP and the soups, tested on every period."""
import json
from pathlib import Path

import torch

from image_folders import write_periods
from shiftkit import models
from shiftkit.checkpoints import read_metadata
from shiftkit.config import load_experiment
from shiftkit.sweep import expand_grid, run_grid

REPO = Path(__file__).resolve().parents[1]


def test_paper_setting_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIFTKIT_CACHE", str(tmp_path / "cache"))
    root = write_periods(tmp_path / "periods", periods=3, per_class=24, size=64)
    torch.manual_seed(0)  # "ImageNet-pretrained": a 1000-class timm model saved with timm's own key names
    torch.save(models.create("mobilevit_xxs", num_classes=1000, in_chans=3).state_dict(), tmp_path / "backbone.pth")
    exp = load_experiment(REPO / "examples" / "paper_setting.yaml", overrides=[
        f"data.root={root}", "data.options.size=64", "data.options.storage=cache", "data.few_shot=10",
        "model.name=mobilevit_xxs", f"method.base={tmp_path / 'backbone.pth'}", f"method.zoo={tmp_path / 'zoo'}",
        "method.source_epochs=1", "method.zoo_batch_size=16", "budget.epochs=1", "budget.batch_size=16",
        f"out={tmp_path / 'runs'}"])
    assert (exp.data.augment, exp.model.kwargs, exp.data.options["size"]) == ("crop_flip", {"normalize": True}, 64)
    points = expand_grid(exp)
    assert [p.method.name for p in points] == ["grasp", "greedy_soup", "fusion"]
    results = run_grid(points, executor="local")
    manifest = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    assert manifest["config"]["augment"] == "crop_flip" and [s["domain"] for s in manifest["sources"]] == ["2000", "2001"]
    assert read_metadata(tmp_path / "zoo" / "base.safetensors")["pretrained_from"] == str(tmp_path / "backbone.pth")
    assert list((tmp_path / "cache").glob("*.u8"))  # the periods were read through the decode cache
    for r in results:
        assert r["target"] == "2002" and set(r["domains"]) == {"2000", "2001", "2002"}
        assert all(0 <= a <= 1 for a in r["domains"].values()) and r["test"]["n"] == 48 - 10 - 2
