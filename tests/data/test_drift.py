import torch
import pytest

from shiftkit.data import (CORRUPTIONS, ArrayDataset, corrupt, drift_fmnist, few_shot, leave_one_out,
                           temporal_specs)
from shiftkit.errors import ConfigError


@pytest.fixture(scope="module")
def bins(fmnist_root):
    return drift_fmnist(fmnist_root, bins=4, seed=0)


def test_bins_are_disjoint_splits_of_all_images(bins):
    assert [d.name for d in bins] == ["bin0", "bin1", "bin2", "bin3"]
    sizes = [len(d.train) + len(d.val) + len(d.test) for d in bins]
    assert sum(sizes) == 800 and max(sizes) - min(sizes) <= 1
    assert all(abs(len(d.train) - 0.8 * s) <= 1 for d, s in zip(bins, sizes))


def test_deterministic_from_seed(fmnist_root, bins):
    again = drift_fmnist(fmnist_root, bins=4, seed=0)
    other = drift_fmnist(fmnist_root, bins=4, seed=1)
    assert torch.equal(again[3].train.images, bins[3].train.images)
    assert not torch.equal(other[3].train.images, bins[3].train.images)


def test_drift_grows_with_bin_index():
    specs = temporal_specs(8)
    assert specs[0].rotation == specs[0].noise == 0
    for field in ("rotation", "contrast", "blur", "noise"):
        values = [getattr(s, field) for s in specs]
        assert values == sorted(values) and values[-1] > 0


def test_bin0_is_clean_and_later_bins_drift(bins, fmnist_root):
    # bin 0 holds untouched Fashion-MNIST pixels (x/255); later bins do not
    x0 = bins[0].train.images
    assert torch.allclose(x0 * 255, (x0 * 255).round(), atol=1e-4)
    noise = [(d.train.images - d.train.images.mean()).std().item() for d in bins]
    assert bins[3].train.meta["drift"]["rotation"] > 0 and noise[0] != noise[3]


def test_leave_one_out_keeps_temporal_order(bins):
    target, sources = leave_one_out(bins, 2)
    assert target.name == "bin2" and [s.name for s in sources] == ["bin0", "bin1", "bin3"]
    assert leave_one_out(bins, -1)[0].name == "bin3"
    with pytest.raises(ConfigError, match="bin9"):
        leave_one_out(bins, "bin9")


def test_few_shot_sizes_disjoint_and_stratified(bins):
    d = few_shot(bins[1], 20, seed=0)
    assert len(d.train) == 20 and len(d.val) == 4
    assert len(d.train) + len(d.val) + len(d.test) == 200
    assert torch.bincount(d.train.labels, minlength=10).tolist() == [2] * 10
    # no image appears in two splits
    flat = lambda ds: {tuple(r.tolist()) for r in ds.images.flatten(1)[:, ::7]}
    assert not flat(d.train) & flat(d.test) and not flat(d.val) & flat(d.test)
    with pytest.raises(ConfigError, match="no test pool"):
        few_shot(bins[1], 190)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions_grow_with_severity(name, bins):
    x = bins[0].test.images[:32].float()
    dist = [(corrupt(x, name, s) - x).abs().mean().item() for s in range(1, 6)]
    assert all(0 <= v for v in dist) and dist[4] > dist[0]
    assert torch.equal(corrupt(x, name, 3, seed=5), corrupt(x, name, 3, seed=5))


def test_corruption_bad_options():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="severity"):
        corrupt(x, "contrast", 6)
    with pytest.raises(ConfigError, match="fog.*valid"):
        corrupt(x, "fog", 1)
