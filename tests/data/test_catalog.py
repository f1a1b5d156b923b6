import pytest
import torch

from shiftkit.data import DATASETS, ArrayDataset, load_domains, split_domain
from shiftkit.errors import ConfigError, DataError
from shiftkit.data.folders import YEARBOOK_FOLDER
from test_folders import _img, _presplit


def test_subset_indexes_per_image_meta():
    ds = ArrayDataset(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.arange(6) % 2, ["a", "b"],
                      {"gender": torch.tensor([0, 0, 0, 1, 1, 1]), "domain": "x"})
    sub = ds.subset(torch.tensor([5, 0]))
    assert sub.meta["gender"].tolist() == [1, 0] and sub.meta["domain"] == "x"


def test_stratified_split_keeps_group_proportions():
    n = 200
    group = (torch.arange(n) < 40).long()  # 20% minority group
    ds = ArrayDataset(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.zeros(n, dtype=torch.long), ["a"], {"g": group})
    d = split_domain("d", ds, stratify=group)
    for part, size in ((d.train, 160), (d.val, 20), (d.test, 20)):
        assert len(part) == size and part.meta["g"].float().mean().item() == pytest.approx(0.2)


def test_every_dataset_is_listed_and_unknown_names_list_them():
    assert {"driftfmnist", "driftfmnist_complementary", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet",
            "image_folder", "yearbook", "yearbook_grasp", "clear"} <= set(DATASETS.names())
    with pytest.raises(ConfigError, match="unknown dataset 'mnist3'.*cifar10"):
        load_domains("mnist3")


def test_fashion_mnist_keeps_the_official_test_set(fmnist_root):
    (d,) = load_domains("fashion_mnist", fmnist_root)
    assert len(d.test) == 160 and len(d.train) == 576 and len(d.val) == 64


def test_folder_datasets_need_a_path(monkeypatch):
    monkeypatch.delenv("SHIFTKIT_DATA", raising=False)
    with pytest.raises(DataError, match="'cifar10' needs a path"):
        load_domains("cifar10")


def test_presplit_folders_keep_their_splits(tmp_path):
    _presplit(tmp_path)
    domains = load_domains("image_folder", tmp_path, size=4)
    assert [d.name for d in domains] == ["year_1-2", "year_3-4"]
    assert (len(domains[0].train), len(domains[0].val), len(domains[0].test)) == (4, 2, 2)


def test_yearbook_grasp_splits_stratified_by_gender(tmp_path):
    # 10 women and 10 men per period: every split holds both genders in equal numbers
    for g in ("F", "M"):
        for period_start in (1920, 1950, 1970, 1990):
            for i in range(10):
                _img(tmp_path / YEARBOOK_FOLDER / g / f"{period_start + 2 * i}_Ohio_X_{i}-1.png", i, size=(8, 8))
    domains = load_domains("yearbook_grasp", tmp_path, size=8)
    assert [d.name for d in domains] == ["before_1950s", "1950s_1960s", "1970s_1980s", "1990s_and_later"]
    for d in domains:
        assert d.classes == ["earlier", "later"] and (len(d.train), len(d.val), len(d.test)) == (16, 2, 2)
        for part in (d.train, d.val, d.test):
            assert part.meta["gender"].float().mean().item() == 0.5
