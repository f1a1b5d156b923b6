"""Interop: torchvision / timm / .pt in; plain safetensors out (no shiftkit needed to load); inspect."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file

from shiftkit import models, prune
from shiftkit.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from shiftkit.cli import main
from shiftkit.errors import CheckpointError
from shiftkit.interop import export_checkpoint, import_checkpoint, inspect_checkpoint, match_keys


def test_torchvision_pth_imports_as_a_timm_resnet50_source(tmp_path):
    tv = torchvision.models.resnet50(num_classes=10).eval()
    torch.save(tv.state_dict(), tmp_path / "r50.pth")
    r = import_checkpoint(tmp_path / "r50.pth", tmp_path / "r50.safetensors", arch="resnet50", num_classes=10)
    assert r["skipped"] == [] and read_metadata(tmp_path / "r50.safetensors")["arch"] == "resnet50"
    net = models.create("resnet50", num_classes=10, in_chans=3)
    load_checkpoint(tmp_path / "r50.safetensors", net)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), tv(x), atol=1e-5)  # same function, not just same names


def test_import_new_head_and_bad_files(tmp_path):
    state = {f"module.{k}": v for k, v in models.create("small_cnn", num_classes=5).state_dict().items()}
    torch.save(state, tmp_path / "dp.pt")
    with pytest.raises(CheckpointError, match="classifier.3.weight"):
        import_checkpoint(tmp_path / "dp.pt", tmp_path / "x.safetensors", arch="small_cnn", num_classes=10, in_chans=1)
    r = import_checkpoint(tmp_path / "dp.pt", tmp_path / "x.safetensors", arch="small_cnn", num_classes=10, in_chans=1,
                          skip_mismatched=True)
    assert r["skipped"] == ["classifier.3.weight", "classifier.3.bias"]
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04cos\nsystem\n.")  # a pickle that would run code
    with pytest.raises(CheckpointError, match="evil.pt"):
        import_checkpoint(tmp_path / "evil.pt", tmp_path / "y.safetensors", arch="small_cnn")
    assert list(match_keys({"_orig_mod.a": 1}, ["a"])) == ["a"]


def test_export_timm_model_loads_into_plain_timm(tmp_path, capsys):
    net = models.create("mobilevit_xxs", num_classes=10, in_chans=3)
    save_checkpoint(tmp_path / "m.safetensors", net, metadata={"method": "grasp"})
    main(["export", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "plain.safetensors")])
    fresh = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10, in_chans=3)
    fresh.load_state_dict(load_file(tmp_path / "plain.safetensors"), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), net.eval()(x))


def test_timm_hub_style_safetensors_becomes_a_source(tmp_path):
    """A safetensors file with no shiftkit metadata (what timm / the hub ship) is imported and validated."""
    from safetensors.torch import save_file

    from shiftkit.interop import as_source

    net = models.create("mobilevit_xxs", num_classes=10, in_chans=3)
    plain = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10, in_chans=3)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in plain.state_dict().items()},
              tmp_path / "hub.safetensors")  # fp16, as hub files often are
    src = as_source(tmp_path / "hub.safetensors", net, tmp_path / "imported")
    assert read_metadata(src)["arch"] == "mobilevit_xxs" and as_source(src, net, tmp_path) == src
    load_checkpoint(src, net)
    k = "stem.conv.weight"
    assert torch.equal(net.state_dict()[k], plain.state_dict()[k].half().float())


def test_export_pruned_model_has_final_masked_weights(tmp_path):
    net = models.create("small_cnn_nobn", num_classes=10, in_chans=1)
    masks = prune.compute_masks(net, prune.create("magnitude"), 0.7)
    prune.apply(net, masks)  # torch.nn.utils.prune: weight_orig + weight_mask in the state dict
    assert any(k.endswith("weight_orig") for k in net.state_dict())
    export_checkpoint(net, tmp_path / "p.safetensors")
    state = load_file(tmp_path / "p.safetensors")
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    fresh = models.create("small_cnn_nobn", num_classes=10, in_chans=1)
    fresh.load_state_dict(state, strict=True)
    for name, mask in masks.items():
        assert (state[name][~mask] == 0).all()  # pruned weights are exactly zero in the file
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), net.eval()(x))


def test_inspect_prints_arch_metadata_tensors_and_sparsity(tmp_path, capsys):
    net = models.create("small_cnn_nobn", num_classes=10, in_chans=1)
    prune.apply(net, prune.compute_masks(net, prune.create("magnitude"), 0.5))
    prune.export(net, tmp_path / "p.safetensors", metadata={"method": "magnitude"})
    info = inspect_checkpoint(tmp_path / "p.safetensors")
    assert info["arch"] == "small_cnn_nobn" and abs(info["weight_sparsity"] - 0.5) < 0.01
    main(["inspect", str(tmp_path / "p.safetensors")])
    out = capsys.readouterr().out
    assert "arch: small_cnn_nobn" in out and "features.0.weight" in out and "weight sparsity 0.5" in out
    assert "magnitude" in out and "32x1x3x3" in out
    main(["inspect", str(tmp_path / "p.safetensors"), "--json"])
    assert json.loads(capsys.readouterr().out)["metadata"]["config"]["num_classes"] == 10
    torch.save(net.state_dict(), tmp_path / "raw.pt")
    assert inspect_checkpoint(tmp_path / "raw.pt")["arch"] == "unknown"
