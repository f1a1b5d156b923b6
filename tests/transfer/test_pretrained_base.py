"""A pretrained base from a file: the zoo fine-tunes every source from it, `train --init` starts from it,
timm archs normalise with their pretrained_cfg; nothing is ever downloaded."""
import json

import pytest
import torch

from image_folders import write_periods
from shiftkit import models
from shiftkit.checkpoints import load_checkpoint, model_from_checkpoint, read_metadata
from shiftkit.cli import main
from shiftkit.data import load_domains
from shiftkit.errors import CheckpointError
from shiftkit.models.timm_bridge import pretrained_cfg
from shiftkit.transfer import ZooConfig, build_zoo
from shiftkit.transfer.zoo import init_from_file


@pytest.fixture()
def pretrained(tmp_path):
    """An ImageNet-like file: another head (5 classes), DataParallel's `module.` prefix, a plain torch state dict."""
    torch.manual_seed(7)
    net = models.create("small_cnn", num_classes=5, in_chans=3)
    path = tmp_path / "pretrained.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    return path, net.state_dict()


def _head(state: dict) -> set[str]:
    return {k for k, v in state.items() if v.ndim and v.shape[0] == 5}


def test_zoo_fine_tunes_every_source_from_the_file(tmp_path, pretrained):
    path, ref = pretrained
    domains = load_domains("image_folder", write_periods(tmp_path / "p"), size=16)
    cfg = ZooConfig(base_domain=0, source_epochs=1, batch_size=8, base_file=str(path))
    manifest = build_zoo(domains, tmp_path / "zoo", cfg=cfg, exclude=(0,))  # base_domain 0 = target: no base is trained
    assert manifest["config"]["base_file"] == str(path) and [e["index"] for e in manifest["sources"]] == [1, 2]
    base = models.create("small_cnn", num_classes=2, in_chans=3)
    meta = load_checkpoint(tmp_path / "zoo" / "base.safetensors", base)
    head = _head(ref)
    assert meta["pretrained_from"] == str(path) and set(json.loads(meta["reinitialised"])) == head and head
    state = base.state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref if k not in head)  # every backbone tensor from the file
    src = models.create("small_cnn", num_classes=2, in_chans=3)
    load_checkpoint(tmp_path / "zoo" / "source_2001.safetensors", src)
    assert any(not torch.equal(src.state_dict()[k], state[k]) for k in state)  # fine-tuned from it


def test_missing_file_is_one_line_and_never_downloads(tmp_path):
    net = models.create("resnet50", num_classes=2, in_chans=3)
    with pytest.raises(CheckpointError) as e:
        init_from_file(tmp_path / "resnet50.pth", net)
    assert "resnet50.pth does not exist" in str(e.value) and "\n" not in str(e.value)


def test_train_init_and_augment_from_the_cli(tmp_path, pretrained, capsys, monkeypatch):
    path, ref = pretrained
    monkeypatch.setenv("SHIFTKIT_CACHE", str(tmp_path / "cache"))
    root = write_periods(tmp_path / "p")
    out = tmp_path / "m.safetensors"
    main(["train", "--dataset", "image_folder", "--root", str(root), "--model", "small_cnn",
          "--epochs", "0", "--init", str(path), "--augment", "crop_flip", "--out", str(out)])
    net = model_from_checkpoint(out)
    load_checkpoint(out, net)
    assert all(torch.equal(net.state_dict()[k], ref[k]) for k in ref if k not in _head(ref))
    result = json.loads((tmp_path / "m" / "result.json").read_text())
    assert result["experiment"]["method"]["init"] == str(path) and result["experiment"]["data"]["augment"] == "crop_flip"
    with pytest.raises(SystemExit) as e:
        main(["train", "--dataset", "image_folder", "--root", str(root), "--init", str(tmp_path / "no.pth"),
              "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "no.pth does not exist" in err
    monkeypatch.setattr("shiftkit.config.DataConfig.load", lambda self: pytest.fail("data loaded before the check"))
    for argv in (["train", "--init", str(tmp_path / "no.pth")], ["sources", "--base", str(tmp_path / "no.pth")]):
        with pytest.raises(SystemExit):
            main([*argv, "--dataset", "image_folder", "--root", str(root), "--out", str(tmp_path / "y.safetensors")])
        assert "no.pth does not exist" in capsys.readouterr().err


def test_timm_normalize_uses_the_pretrained_cfg(tmp_path):
    assert pretrained_cfg("resnet50") == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                                          "input_size": (3, 224, 224)}  # ImageNet's, from timm's local table
    cfg = pretrained_cfg("efficientnet_b1")
    assert cfg["mean"] != (0.0, 0.0, 0.0)
    torch.manual_seed(0)
    plain = models.create("efficientnet_b1", num_classes=3, in_chans=3).eval()
    norm = models.create("efficientnet_b1", num_classes=3, in_chans=3, normalize=True).eval()
    norm.load_state_dict(plain.state_dict())  # same keys: the mean / std buffers are not saved
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        want, raw, got = plain((x - mean) / std), plain(x), norm(x)
        scale = want.abs().max()  # a fresh efficientnet's logits are tiny: compare relative to them
        assert (got - want).abs().max() <= 1e-4 * scale and (got - raw).abs().max() > 1e-2 * scale
    from shiftkit.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "n.safetensors", norm)
    again = model_from_checkpoint(tmp_path / "n.safetensors")  # normalize=True travels in the metadata
    load_checkpoint(tmp_path / "n.safetensors", again)
    assert json.loads(read_metadata(tmp_path / "n.safetensors")["config"])["normalize"] is True
    with torch.no_grad():
        assert torch.equal(again.eval()(x), got)


def test_sources_base_from_the_cli(tmp_path, pretrained, capsys, monkeypatch):
    path, ref = pretrained
    root = write_periods(tmp_path / "p")
    main(["sources", "--dataset", "image_folder", "--root", str(root), "--base", str(path), "--augment", "flip",
          "--source-epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "zoo")])
    manifest = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    assert manifest["config"]["base_file"] == str(path) and manifest["config"]["augment"] == "flip"
    assert [s["domain"] for s in manifest["sources"]] == ["2000", "2001", "2002"]  # no --target: every period
    assert f"base {path}" in capsys.readouterr().out


def test_target_fine_tuning_augments_only_when_asked(zoo, tmp_path):
    """data.augment reaches a transfer method's target fine-tuning (MergeConfig.augment): same seed, same
    result; augmented, another result; and `none` is the default."""
    from shiftkit import transfer
    from shiftkit.transfer.base import MergeConfig

    assert MergeConfig().augment == "none"

    def run(augment: str, name: str) -> dict:
        torch.manual_seed(0)
        merger = transfer.create("fusion", zoo.model(), zoo.target, run_dir=tmp_path / name, initial_epochs=1,
                                 finetune_epochs=1, batch_size=16, augment=augment)
        assert merger.train_config(1, 0).augment == augment
        return transfer.run_sources(merger, zoo.sources[:2]).state_dict()

    a, b, n = run("crop_flip", "a"), run("crop_flip", "b"), run("none", "n")
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], n[k]) for k in a)
