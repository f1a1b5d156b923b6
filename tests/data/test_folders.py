"""Image-folder readers (generic, pre-split, CLEAR, Yearbook) on tiny real PNG/JPEG trees."""
import pytest
import torch
from PIL import Image

from shiftkit.data.folders import (YEARBOOK_FOLDER, is_presplit, load_clear, load_image_folder, load_presplit,
                                   load_yearbook)
from shiftkit.errors import ConfigError, DataError


def _img(path, value=0, size=(6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)


# ---------------------------------------------------------------- generic image folder

def _domains(root):
    for domain, classes in {"10": {"cat": 1, "dog": 2}, "2": {"ant": 1, "dog": 1}, "1": {"cat": 1}}.items():
        for c, n in classes.items():
            for i in range(n):
                _img(root / domain / c / f"{i}.png", value=10 * i)
    (root / "README.txt").write_text("not a domain")
    (root / "2" / "dog" / "notes.txt").write_text("not an image")


def test_image_folder_domains_and_shared_classes(tmp_path):
    _domains(tmp_path)
    out = load_image_folder(tmp_path)
    assert list(out) == ["1", "2", "10"]  # natural order
    for ds in out.values():
        assert ds.classes == ["ant", "cat", "dog"] and ds.images.shape[1:] == (3, 5, 6)
    assert out["10"].labels.tolist() == [1, 2, 2] and out["2"].labels.tolist() == [0, 2]
    assert out["1"].labels.tolist() == [1] and out["10"].images.dtype == torch.uint8
    assert out["10"].images[0, :, 0, 0].tolist() == [0, 0, 255]  # RGB channel order kept


def test_image_folder_resize_and_grayscale(tmp_path):
    _domains(tmp_path)
    out = load_image_folder(tmp_path, size=4, channels=1)
    assert out["10"].images.shape == (3, 1, 4, 4)


def test_image_folder_mixed_sizes_need_size(tmp_path):
    _domains(tmp_path)
    _img(tmp_path / "10" / "dog" / "big.png", size=(9, 9))
    with pytest.raises(DataError, match=r"big.png has shape .*pass size="):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=8)["10"].images.shape == (4, 3, 8, 8)


def test_image_folder_empty_class_folder(tmp_path):
    _domains(tmp_path)
    (tmp_path / "2" / "empty").mkdir()
    with pytest.raises(DataError, match=r"2/empty is empty"):
        load_image_folder(tmp_path)


def test_image_folder_unreadable_image(tmp_path):
    _domains(tmp_path)
    (tmp_path / "1" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot read image .*1/cat/broken.png"):
        load_image_folder(tmp_path)


def test_image_folder_bad_options_and_roots(tmp_path):
    _domains(tmp_path)
    with pytest.raises(ConfigError, match="channels"):
        load_image_folder(tmp_path, channels=2)
    with pytest.raises(DataError, match="missing"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DataError, match="empty_root has no domain folders"):
        load_image_folder(tmp_path / "empty_root")


# ---------------------------------------------------------------- pre-split

def _presplit(root):
    for domain in ("year_1-2", "year_3-4"):
        for split, n in (("train", 2), ("val", 1), ("test", 1)):
            for c in ("bus", "car"):
                for i in range(n):
                    _img(root / domain / split / c / f"{i}.jpg", 30 * i)
    _img(root / "year_3-4" / "train" / "van" / "0.jpg")


def test_presplit(tmp_path):
    _presplit(tmp_path)
    assert is_presplit(tmp_path) and not is_presplit(tmp_path / "year_1-2") and not is_presplit(tmp_path / "x")
    out = load_presplit(tmp_path, size=4)
    assert list(out) == ["year_1-2", "year_3-4"] and list(out["year_1-2"]) == ["train", "val", "test"]
    train = out["year_1-2"]["train"]
    assert train.classes == ["bus", "car", "van"] and train.labels.tolist() == [0, 0, 1, 1]
    assert train.images.shape == (4, 3, 4, 4) and train.meta == {"domain": "year_1-2", "split": "train"}
    assert out["year_3-4"]["train"].labels.tolist() == [0, 0, 1, 1, 2]
    with pytest.raises(DataError, match="load_presplit"):
        load_image_folder(tmp_path)


def test_presplit_detection_and_missing_splits(tmp_path):
    _presplit(tmp_path)
    assert not is_presplit(tmp_path / "year_1-2" / "train")  # <class>/<img> is not pre-split
    for p in (tmp_path / "year_3-4" / "val").rglob("*.jpg"):
        p.unlink()
    with pytest.raises(DataError, match=r"year_3-4/val/bus is empty"):
        load_presplit(tmp_path)
    with pytest.raises(DataError, match="not pre-split"):
        load_presplit(tmp_path / "year_1-2")


# ---------------------------------------------------------------- CLEAR

def _clear(root, buckets=range(1, 12)):
    for b in buckets:
        for c in ("BACKGROUND", "bus", "camera"):
            _img(root / "labeled_images" / str(b) / c / f"{b}_{c}.jpg", 20 * b, size=(10 + len(c), 10))  # photos vary


def test_clear_per_bucket(tmp_path):
    _clear(tmp_path)
    out = load_clear(tmp_path, size=8)
    assert list(out) == [str(b) for b in range(1, 12)]
    assert out["11"].classes == ["BACKGROUND", "bus", "camera"] and out["11"].labels.tolist() == [0, 1, 2]
    assert out["3"].images.shape == (3, 3, 8, 8) and out["3"].meta["buckets"] == [3]


def test_clear_binned_like_grasp(tmp_path):
    _clear(tmp_path)
    out = load_clear(tmp_path / "labeled_images", bins=5, classes=["camera", "bus"], size=8)
    assert list(out) == ["year_1-2", "year_3-4", "year_5-6", "year_7-8", "year_9-10"]  # bucket 11 dropped
    ds = out["year_9-10"]
    assert ds.classes == ["camera", "bus"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.meta["buckets"] == [9, 10]
    red = ds.images[:, 0].float().mean(dim=(1, 2))  # red = 20 * bucket
    assert torch.allclose(red, torch.tensor([180.0, 200, 180, 200]), atol=2)
    assert list(load_clear(tmp_path, bins=10, size=4)) == [f"year_{b}" for b in range(1, 11)]


def test_clear_errors(tmp_path):
    _clear(tmp_path, buckets=[1, 2, 3])
    with pytest.raises(ConfigError, match="bins"):
        load_clear(tmp_path, bins=3)
    with pytest.raises(DataError, match=r"labeled_images lacks CLEAR bucket folders \[4, 5"):
        load_clear(tmp_path, bins=5)
    with pytest.raises(DataError, match=r"\['plane'\] not found"):
        load_clear(tmp_path, classes=["bus", "plane"])
    with pytest.raises(DataError, match=r"has shape .*pass size="):
        load_clear(tmp_path, size=None)
    (tmp_path / "labeled_images" / "extra").mkdir()
    with pytest.raises(DataError, match=r"numbered CLEAR bucket folders, found \['extra'\]"):
        load_clear(tmp_path)


def test_clear_empty_class_only_matters_if_chosen(tmp_path):
    _clear(tmp_path, buckets=[1, 2])
    (tmp_path / "labeled_images" / "2" / "tripod").mkdir()
    assert list(load_clear(tmp_path, classes=["bus"], size=4)) == ["1", "2"]
    with pytest.raises(DataError, match=r"2/tripod is empty"):
        load_clear(tmp_path, size=4)


# ---------------------------------------------------------------- Yearbook

YEARS = {"F": [1905, 1931, 1948, 1955, 1962, 1975, 1999, 2004], "M": [1929, 1930, 1951, 1968, 1981, 2013]}


def _yearbook(root):
    folder = root / YEARBOOK_FOLDER
    for g, years in YEARS.items():
        for i, y in enumerate(years):
            _img(folder / g / f"{y}_Ohio_Cleveland_Central_{i}-1.png", y % 256, size=(17, 19))
    return folder


def test_yearbook_gender_task(tmp_path):
    _yearbook(tmp_path)
    out = load_yearbook(tmp_path)
    assert list(out) == ["1900", "1920", "1930", "1940", "1950", "1960", "1970", "1980", "1990", "2000", "2010"]
    ds = out["1930"]
    assert ds.classes == ["F", "M"] and ds.images.shape == (2, 3, 32, 32)
    assert ds.meta["year"].tolist() == [1930, 1931] and ds.labels.tolist() == [1, 0]
    assert torch.equal(ds.meta["gender"], ds.labels)
    assert list(load_yearbook(tmp_path, domain_width=50, size=8)) == ["1900", "1950", "2000"]


def test_yearbook_grasp_task(tmp_path):
    folder = _yearbook(tmp_path)
    out = load_yearbook(folder, task="grasp", size=8)  # the folder holding M/ and F/ works too
    assert list(out) == ["before_1950s", "1950s_1960s", "1970s_1980s", "1990s_and_later"]
    first = out["before_1950s"]
    assert first.classes == ["earlier", "later"]
    assert first.meta["year"].tolist() == [1905, 1929, 1930, 1931, 1948]
    assert first.labels.tolist() == [0, 0, 1, 1, 1]  # < 1930 vs >= 1930
    assert first.meta["gender"].tolist() == [0, 1, 1, 0, 0]  # kept for gender-stratified splits
    assert out["1950s_1960s"].labels.tolist() == [0, 0, 1, 1] and out["1950s_1960s"].images.shape == (4, 3, 8, 8)
    assert out["1970s_1980s"].meta["year"].tolist() == [1975, 1981] and out["1970s_1980s"].labels.tolist() == [0, 1]
    assert out["1990s_and_later"].labels.tolist() == [0, 1, 1]


def test_yearbook_errors(tmp_path):
    folder = _yearbook(tmp_path)
    with pytest.raises(ConfigError, match="'age'"):
        load_yearbook(tmp_path, task="age")
    with pytest.raises(ConfigError, match="domain_width"):
        load_yearbook(tmp_path, domain_width=0)
    _img(folder / "M" / "Ohio_1950.png")
    with pytest.raises(DataError, match=r"M/Ohio_1950.png does not start with a 4-digit year"):
        load_yearbook(tmp_path)
    (folder / "M" / "Ohio_1950.png").unlink()
    (folder / "M" / "1950_Ohio.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"cannot read image .*M/1950_Ohio.png"):
        load_yearbook(tmp_path, task="grasp")
    with pytest.raises(DataError, match=r"image folder .*/F does not exist"):
        load_yearbook(tmp_path / "nowhere")


def test_many_images_read_in_parallel_keep_order(tmp_path):
    for i in range(300):  # above the threaded-read threshold
        _img(tmp_path / "d" / "c" / f"{i}.png", i % 256)
    _img(tmp_path / "d" / "e" / "0.png", 0)  # a second class: one class cannot train a classifier
    ds = load_image_folder(tmp_path)["d"]
    assert ds.images[:300, 0, 0, 0].tolist() == [i % 256 for i in range(300)]  # natural file order
    _img(tmp_path / "d" / "c" / "150.png", size=(7, 7))
    with pytest.raises(DataError, match=r"c/150.png has shape"):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------- every reader through the decode cache

@pytest.mark.parametrize("reader", ["presplit", "clear", "yearbook"])
def test_readers_give_the_same_data_through_the_cache(tmp_path, reader):
    from shiftkit.data._cache import MappedImages

    make, load = {"presplit": (_presplit, lambda **k: {f"{d}/{s}": ds for d, splits in load_presplit(tmp_path, **k).items()
                                                        for s, ds in splits.items()}),
                  "clear": (_clear, lambda **k: load_clear(tmp_path, bins=5, size=8, **k)),
                  "yearbook": (_yearbook, lambda **k: load_yearbook(tmp_path, size=8, **k))}[reader]
    make(tmp_path)
    mem, cached = load(storage="memory"), load(storage="cache", cache_dir=tmp_path / "cache")
    assert list(mem) == list(cached)
    for name in mem:
        a, b = mem[name], cached[name]
        assert isinstance(b.images, MappedImages) and torch.equal(b.images[:], a.images)
        assert torch.equal(b.labels, a.labels) and b.meta.keys() == a.meta.keys()
