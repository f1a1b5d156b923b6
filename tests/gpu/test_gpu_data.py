"""Issue 21's data paths on a CUDA device: augmentation of device batches and the memory-mapped decode cache
(per-batch copies, or moved whole in chunks when it fits). Skipped without CUDA (see conftest.py)."""
from __future__ import annotations

import torch

from image_folders import write_periods
from shiftkit import models
from shiftkit.data import load_domains
from shiftkit.data._cache import MappedImages
from shiftkit.train import TrainConfig, fit, iterate_batches


def _batches(ds, device, augment):
    return [(x.cpu(), y.cpu()) for x, y in iterate_batches(ds, 8, shuffle=True, generator=torch.Generator().manual_seed(0),
                                                           device=device, augment=augment)]


def test_augmented_device_batches_match_the_cpu(dev, tmp_path):
    ds = load_domains("image_folder", write_periods(tmp_path / "p"), size=16, storage="cache",
                      cache_dir=str(tmp_path / "c"))[0].train
    assert isinstance(ds.images, MappedImages)
    for augment in ("none", "flip", "crop_flip"):
        on_dev, on_cpu = _batches(ds, dev, augment), _batches(ds, torch.device("cpu"), augment)
        assert len(on_dev) == len(on_cpu)
        for (a, ya), (b, yb) in zip(on_dev, on_cpu):  # same draws from the host generator on every device
            assert torch.equal(ya, yb) and torch.allclose(a, b, atol=1e-4), augment


def test_cached_folder_trains_on_the_device_like_memory(dev, tmp_path):
    root = write_periods(tmp_path / "p")
    weights = []
    for storage in ("memory", "cache"):
        d = load_domains("image_folder", root, size=16, storage=storage, cache_dir=str(tmp_path / "c"))[1]
        torch.manual_seed(0)
        net = models.create("small_cnn", num_classes=2, in_chans=3).to(dev)
        fit(net, d.train, d.val, TrainConfig(epochs=2, batch_size=8, augment="crop_flip", progress=False))
        weights.append({k: v.cpu() for k, v in net.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    mapped = load_domains("image_folder", root, size=16, storage="cache", cache_dir=str(tmp_path / "c"))[0].train.images
    assert torch.equal(mapped.to(dev, chunk=5).cpu(), mapped[:])  # chunked copy: host memory bounded by a chunk
