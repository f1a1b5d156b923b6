"""The one-call Python API (shiftkit.api) and the adapters for a user's own data."""
from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from shiftkit import models, prune as pruning
from shiftkit.api import evaluate_under_shift, merge, prune, shift_sets
from shiftkit.checkpoints import save_checkpoint
from shiftkit.config import DataConfig
from shiftkit.data import ArrayDataset, load_domains, split_domain
from shiftkit.errors import ConfigError, DataError
from shiftkit.train import adapt_bn, evaluate


def _net():
    torch.manual_seed(0)
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4)


def _as_torch(ds: ArrayDataset) -> TensorDataset:
    """What a user has: a plain torch dataset of float images in [0, 1] and integer labels."""
    return TensorDataset(ArrayDataset.to_float(ds.images), ds.labels)


def test_from_torch_reads_datasets_and_loaders(tiny_dataset):
    plain = _as_torch(tiny_dataset)
    for data in (plain, DataLoader(plain, batch_size=7, shuffle=False)):
        got = ArrayDataset.from_torch(data, classes=tiny_dataset.classes)
        assert torch.equal(got.images, ArrayDataset.to_float(tiny_dataset.images)) and torch.equal(got.labels, tiny_dataset.labels)
    assert len(ArrayDataset.from_torch(plain, limit=13)) == 13
    assert ArrayDataset.from_torch(plain).classes == ["0", "1", "2", "3"]  # labels seen, when the dataset has none
    with pytest.raises(DataError, match="ToTensor"):
        ArrayDataset.from_torch([(torch.zeros(4), 0)])  # flat vectors are not images


def test_prune_equals_the_library_pipeline_and_masks_stay_fixed(tiny_dataset):
    net, ref = _net(), _net()
    masks = prune(net, "magnitude", 0.6, finetune=_as_torch(tiny_dataset), epochs=1, keep_last=True)
    expected = pruning.compute_masks(ref, pruning.create("magnitude", keep_last=True), 0.6)
    assert masks.keys() == expected.keys() and all(torch.equal(masks[k], expected[k]) for k in masks)
    # attached through torch.nn.utils.prune, and fine-tuning left every pruned weight at exactly zero
    conv = dict(net.named_modules())[next(iter(masks)).rsplit(".", 1)[0]]
    assert hasattr(conv, "weight_mask")
    params = dict(pruning.dense_copy(net).named_parameters())
    assert all(params[k][~m].abs().max() == 0 for k, m in masks.items() if (~m).any())
    removed = sum(int((~m).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert removed == pytest.approx(0.6, abs=0.02)


def test_prune_needs_calibration_for_data_driven_criteria():
    with pytest.raises(ConfigError, match="calibration"):
        prune(_net(), "gcnet", 0.5)


def test_merge_equals_the_protocol_run(tmp_path, tiny_dataset):
    domain = split_domain("t", tiny_dataset, fractions=(0.5, 0.25, 0.25), seed=0)
    paths = []
    for i in range(2):
        torch.manual_seed(10 + i)
        src = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
        paths.append(tmp_path / f"s{i}.safetensors")
        save_checkpoint(paths[-1], src)
    opts = {"initial_epochs": 1, "finetune_epochs": 1, "batch_size": 16}
    a = merge(paths, (_as_torch(domain.train), _as_torch(domain.val)), method="grasp", **opts)
    b = merge(paths, domain, method="grasp", **opts)  # the same data as a Domain: the same weights
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ConfigError, match="no sources"):
        merge([], domain)


def test_evaluate_under_shift_names_every_set_and_leaves_the_model(tiny_dataset):
    net = models.create("small_cnn", num_classes=4, in_chans=1, width=4, norm="bn")
    before = copy.deepcopy(net.state_dict())
    sets = {"clean": tiny_dataset, "dark": ArrayDataset(tiny_dataset.images // 3, tiny_dataset.labels, tiny_dataset.classes)}
    table = evaluate_under_shift(net, sets, corruptions=True, adapt_bn=True)
    assert list(table)[:2] == ["clean", "dark"] and "gaussian_noise@5" in table
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # AdaBN worked on copies
    dark = sets["dark"]
    assert table["dark"] == evaluate(adapt_bn(net, dark), dark)  # statistics of that set, not of the clean one
    assert table["dark"]["loss"] != evaluate(net, dark)["loss"]
    assert evaluate_under_shift(net, sets)["dark"] == evaluate(net, dark)
    assert len(shift_sets(sets)) == 2


def _folder(root, size=(9, 7)):
    for d in ("2019", "2020"):
        for c, value in (("cat", 40), ("dog", 200)):
            for i in range(4):
                path = root / d / c / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, (value, i * 20, 255 - value)).save(path)


def test_own_image_folder_with_its_size_and_channels(tmp_path):
    _folder(tmp_path)
    domains = DataConfig(name="image_folder", root=str(tmp_path), options={"size": 16, "channels": 1}).load()
    assert [d.name for d in domains] == ["2019", "2020"] and domains[0].train.shape == (1, 16, 16)
    assert load_domains("image_folder", tmp_path)[0].train.shape == (3, 32, 32)  # the default stays RGB 32x32
    with pytest.raises(ConfigError, match="unknown option.*'colour'.*valid: seed, size, channels"):
        load_domains("image_folder", tmp_path, colour=1)
    with pytest.raises(DataError, match="channels=2"):
        load_domains("image_folder", tmp_path, channels=2)
