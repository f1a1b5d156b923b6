"""Folders larger than memory: the memory-mapped decode cache gives the same data as the in-memory path,
is rebuilt when the folder changes, and fails on a bad image with the same one-line DataError."""
import pickle

import pytest
import torch
from PIL import Image

from image_folders import write_periods
from shiftkit import models
from shiftkit.data import _images, few_shot, load_domains
from shiftkit.data._cache import MappedImages
from shiftkit.errors import ConfigError, DataError
from shiftkit.train import TrainConfig, evaluate, fit


@pytest.fixture()
def periods(tmp_path):
    return write_periods(tmp_path / "periods")


def _load(root, cache, storage="cache", **kw):
    return load_domains("image_folder", root, size=16, storage=storage, cache_dir=str(cache), **kw)


def test_cache_gives_the_in_memory_data(periods, tmp_path):
    mem, cached = _load(periods, tmp_path, "memory"), _load(periods, tmp_path / "c")
    for a, b in zip(mem, cached):
        for split in ("train", "val", "test"):
            x, y = getattr(a, split), getattr(b, split)
            assert isinstance(y.images, MappedImages) and isinstance(x.images, torch.Tensor)
            assert y.images.shape == x.images.shape and y.shape == x.shape
            assert torch.equal(y.images[:], x.images) and torch.equal(y.labels, x.labels)
    assert len(list((tmp_path / "c").glob("*.u8"))) == len(mem)  # one cache file per period


def test_mapped_images_index_like_the_tensor(periods, tmp_path):
    x = _load(periods, tmp_path, "memory")[0].train.images
    m = _load(periods, tmp_path / "c")[0].train.images
    idx = torch.tensor([5, 0, 5, 2])
    assert torch.equal(m[idx], x[idx]) and torch.equal(m[3], x[3]) and torch.equal(m[1:7:2], x[1:7:2])
    assert torch.equal(m[torch.tensor(3)], x[3]) and torch.equal(m[-1], x[-1]) and torch.equal(m[-3:], x[-3:])
    assert isinstance(torch.cat([m, m], 0), MappedImages) and torch.equal(torch.cat([m, m], 0)[:], torch.cat([x, x]))
    mask = torch.arange(len(x)) % 3 == 0
    assert torch.equal(m[mask], x[mask])
    assert torch.equal(m.subset(idx)[:], x[idx])  # subset composes indices, reads nothing
    assert torch.equal(torch.cat([m, m.subset(idx)])[:], torch.cat([x, x[idx]]))
    assert torch.equal(torch.cat([m, x[:2]]), torch.cat([x, x[:2]]))  # mixed: read, then concatenated
    assert torch.equal(pickle.loads(pickle.dumps(m))[:], x)  # by file name: worker processes, deepcopy
    assert torch.equal(m.float(), x.float())


def test_training_few_shot_and_evaluation_agree_on_both(periods, tmp_path):
    """The library's loops see the same pixels: identical weights and metrics after training on either."""
    results = []
    for storage, cache in (("memory", tmp_path), ("cache", tmp_path / "c")):
        d = few_shot(_load(periods, cache, storage)[1], 8, seed=0)
        torch.manual_seed(0)
        net = models.create("small_cnn", num_classes=2, in_chans=3)
        fit(net, d.train, d.val, TrainConfig(epochs=2, batch_size=4, progress=False))
        results.append((net.state_dict(), evaluate(net, d.test)))
    (sa, ma), (sb, mb) = results
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and ma == mb


def test_second_load_reuses_the_cache(periods, tmp_path, monkeypatch):
    _load(periods, tmp_path)
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.glob("*.u8"))
    decoded = []
    real = _images.read_image
    monkeypatch.setattr(_images, "read_image", lambda p, **k: decoded.append(p) or real(p, **k))
    _load(periods, tmp_path)
    assert len(decoded) == 3  # the first image of each period (its shape), nothing else
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.glob("*.u8")) == before


def test_changed_folder_is_rebuilt_not_reused(periods, tmp_path):
    first = _load(periods, tmp_path)
    old = set(tmp_path.glob("*.u8"))
    img = periods / "2000" / "cat" / "0.png"
    Image.new("RGB", (20, 20), (255, 255, 255)).save(img)  # same name, new pixels (size / mtime change)
    second = _load(periods, tmp_path)
    new = set(tmp_path.glob("*.u8"))
    assert len(new) == len(old) and len(new & old) == len(old) - 1  # period 2000 rebuilt, the old file deleted
    fresh = _load(periods, tmp_path / "m", "memory")
    for a, b in zip(second, fresh):
        assert torch.equal(a.train.images[:], b.train.images)
    every = lambda d: torch.cat([d.train.images, d.val.images, d.test.images])[:]  # noqa: E731
    assert not torch.equal(every(first[0]), every(second[0]))  # the old mapping still reads its own (deleted) file


@pytest.mark.parametrize("bad", ["corrupt", "truncated", "zero", "bomb"])
def test_bad_image_during_cache_build_is_one_line(periods, tmp_path, bad, monkeypatch):
    path = periods / "2001" / "dog" / "3.png"
    if bad == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    elif bad == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    elif bad == "zero":
        path.write_bytes(b"")
    else:
        Image.new("RGB", (200, 200)).save(path)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(DataError) as e:
        _load(periods, tmp_path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    assert not list(tmp_path.glob("*.tmp-*")) and len(list(tmp_path.glob("*.u8"))) == 1  # only period 2000's


def test_auto_storage_switches_on_size(periods, tmp_path, monkeypatch):
    assert isinstance(_load(periods, tmp_path, "auto")[0].train.images, torch.Tensor)  # small: in memory
    monkeypatch.setattr(_images, "AUTO_CACHE_BYTES", 1000)
    assert isinstance(_load(periods, tmp_path, "auto")[0].train.images, MappedImages)


def test_unknown_storage_is_a_config_error(periods, tmp_path):
    with pytest.raises(ConfigError, match="storage='disk'; valid: auto, memory, cache"):
        _load(periods, tmp_path, "disk")


def test_unwritable_cache_folder_is_one_line(periods, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as e:
        _load(periods, blocker / "cache")
    assert "image cache folder" in str(e.value) and "\n" not in str(e.value)


def test_prune_with_corruptions_gives_the_same_result_on_both(periods, tmp_path):
    """GC-Net's class-balanced calibration, its connectivity pass, fine-tuning and the corruption sets
    (drift applied to the test images) read the cache exactly as they read memory."""
    from shiftkit.config import parse_experiment
    from shiftkit.experiment import run_experiment

    out = []
    for storage in ("memory", "cache"):
        exp = parse_experiment({
            "data": {"name": "image_folder", "root": str(periods), "domain": 1, "augment": "flip",
                     "options": {"size": 16, "storage": storage, "cache_dir": str(tmp_path / "c")}},
            "model": {"name": "small_cnn"}, "budget": {"epochs": 1, "batch_size": 8},
            "method": {"kind": "prune", "name": "gcnet", "sparsity": 0.5, "dense_epochs": 1,
                       "options": {"calib_per_class": 4}},
            "eval": {"corruptions": True}, "out": str(tmp_path / storage)})
        r = run_experiment(exp, progress=False)
        out.append({k: r[k] for k in ("test", "domains", "corruptions", "true_sparsity")})
    assert out[0] == out[1] and len(out[0]["corruptions"]) > 10


def test_auto_counts_every_domain_together(periods, tmp_path, monkeypatch):
    """Three periods that each fit under the threshold but not together are all cached."""
    one = 24 * 3 * 16 * 16  # decoded bytes of one period at 16 px
    monkeypatch.setattr(_images, "AUTO_CACHE_BYTES", 2 * one)
    assert all(isinstance(d.train.images, MappedImages) for d in _load(periods, tmp_path, "auto"))
    monkeypatch.setattr(_images, "AUTO_CACHE_BYTES", 3 * one)
    assert all(isinstance(d.train.images, torch.Tensor) for d in _load(periods, tmp_path, "auto"))
