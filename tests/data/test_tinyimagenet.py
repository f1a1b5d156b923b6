"""Tiny ImageNet reader on a tiny copy of the real layout (JPEG files, tab-separated annotations)."""
import pytest
import torch
from PIL import Image

from shiftkit.data.tinyimagenet import load_tiny_imagenet
from shiftkit.errors import ConfigError, DataError



def _jpeg(path, value, mode="RGB", size=16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value if mode == "L" else (value, value, value)).save(path, "JPEG", quality=95)


def _tiny(tmp_path, wnids=("n01641577", "n01443537", "n01629819")):
    folder = tmp_path / "tiny-imagenet-200"
    folder.mkdir()
    (folder / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    (folder / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n"
                                      "n00001740\tentity\n")
    for c, w in enumerate(wnids):
        for i in range(2):
            _jpeg(folder / "train" / w / "images" / f"{w}_{i}.JPEG", 40 * c + 10 * i)
        (folder / "train" / w / f"{w}_boxes.txt").write_text(f"{w}_0.JPEG\t0\t0\t10\t10\n")
    lines = []
    for i, w in enumerate(["n01629819", "n01443537", "n01641577", "n01629819"]):
        _jpeg(folder / "val" / "images" / f"val_{i}.JPEG", 20 * i, mode="L" if i == 3 else "RGB")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t10\t20\t30")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_train_split_follows_wnids_order(tmp_path):
    _tiny(tmp_path)
    ds = load_tiny_imagenet(tmp_path, split="train")
    assert ds.classes == ["n01641577", "n01443537", "n01629819"]
    assert ds.images.shape == (6, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    means = ds.images.float().mean(dim=(1, 2, 3))
    assert torch.allclose(means, torch.tensor([0.0, 10, 40, 50, 80, 90]), atol=2)
    assert ds.meta["class_names"] == ["n01641577", "goldfish, Carassius auratus", "European fire salamander"]


def test_val_split_from_annotations(tmp_path):
    folder = _tiny(tmp_path)
    ds = load_tiny_imagenet(folder, split="val", size=8)
    assert ds.images.shape == (4, 3, 8, 8)  # the grayscale JPEG comes back as RGB
    # grouped by class in wnids order: n01641577 (val_2), n01443537 (val_1), n01629819 (val_0, val_3)
    assert ds.labels.tolist() == [0, 1, 2, 2]
    assert torch.allclose(ds.images.float().mean(dim=(1, 2, 3)), torch.tensor([40.0, 20, 0, 60]), atol=2)


def test_words_txt_is_optional(tmp_path):
    folder = _tiny(tmp_path)
    (folder / "words.txt").unlink()
    assert load_tiny_imagenet(folder, split="val").meta["class_names"] == load_tiny_imagenet(folder, split="val").classes


def test_bad_split_name(tmp_path):
    _tiny(tmp_path)
    with pytest.raises(ConfigError, match="'test'"):
        load_tiny_imagenet(tmp_path, split="test")


def test_missing_wnids(tmp_path):
    with pytest.raises(DataError, match="wnids.txt"):
        load_tiny_imagenet(tmp_path, split="train")


def test_unknown_wnid_in_annotations(tmp_path):
    folder = _tiny(tmp_path)
    ann = folder / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn99999999\t0\t10\t20\t30\n")
    with pytest.raises(DataError, match=r"val_annotations.txt line 5: class 'n99999999'"):
        load_tiny_imagenet(folder, split="val")


def test_annotation_names_missing_image(tmp_path):
    folder = _tiny(tmp_path)
    (folder / "val" / "images" / "val_2.JPEG").unlink()
    with pytest.raises(DataError, match=r"val_annotations.txt line 3: image .*val_2.JPEG not found"):
        load_tiny_imagenet(folder, split="val")


def test_empty_class_folder(tmp_path):
    folder = _tiny(tmp_path)
    for p in (folder / "train" / "n01443537" / "images").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"n01443537/images is empty"):
        load_tiny_imagenet(folder, split="train")


def test_missing_class_folder(tmp_path):
    folder = _tiny(tmp_path)
    (folder / "wnids.txt").write_text("n01443537\nn02000000\n")
    with pytest.raises(DataError, match=r"train/n02000000/images does not exist"):
        load_tiny_imagenet(folder, split="train")


def test_unreadable_image(tmp_path):
    folder = _tiny(tmp_path)
    (folder / "train" / "n01629819" / "images" / "n01629819_1.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*n01629819_1.JPEG"):
        load_tiny_imagenet(folder, split="train")


def test_truncated_image(tmp_path):
    folder = _tiny(tmp_path)
    path = folder / "val" / "images" / "val_1.JPEG"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cannot read image .*val_1.JPEG"):
        load_tiny_imagenet(folder, split="val")
