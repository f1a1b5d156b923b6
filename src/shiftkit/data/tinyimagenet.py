"""Tiny ImageNet (200 classes, 64x64) from its distributed folder layout.

Reference: Le & Yang, "Tiny ImageNet Visual Recognition Challenge", 2015;
`tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/*.JPEG,
val/images/*.JPEG, val/val_annotations.txt}`. The test split has no labels and is not read.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from .._files import read_regular
from ..errors import ConfigError, DataError
from ._images import build_dataset, list_images
from .base import ArrayDataset

__all__ = ["load_tiny_imagenet", "TINY_IMAGENET_FOLDER"]

TINY_IMAGENET_FOLDER = "tiny-imagenet-200"


def _find_folder(root: Path) -> Path:
    if (root / "wnids.txt").is_file():
        return root
    if (root / TINY_IMAGENET_FOLDER / "wnids.txt").is_file():
        return root / TINY_IMAGENET_FOLDER
    raise DataError(f"Tiny ImageNet class list not found: no {root / 'wnids.txt'} "
                    f"nor {root / TINY_IMAGENET_FOLDER / 'wnids.txt'}")


def _read_lines(path: Path) -> list[str]:
    try:
        return read_regular(path, DataError, max_bytes=64 << 20).decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read {path}: {e}") from e


def _read_wnids(path: Path) -> list[str]:
    """Class ids in file order: this order is the label order."""
    wnids = [line.strip() for line in _read_lines(path) if line.strip()]
    if not wnids:
        raise DataError(f"{path} lists no classes")
    dupes = sorted(w for w, n in Counter(wnids).items() if n > 1)  # linear: list.count per line was quadratic
    if dupes:
        raise DataError(f"{path} lists classes more than once: {dupes}")
    return wnids


def _read_words(path: Path, wnids: list[str]) -> list[str]:
    """Human-readable names (`<wnid>\\t<words>` lines) in class order; the wnid when unnamed."""
    words: dict[str, str] = {}
    for n, line in enumerate(_read_lines(path), 1):
        if line.strip():
            wnid, sep, name = line.partition("\t")
            if not sep:
                raise DataError(f"{path} line {n}: expected '<wnid>\\t<words>', got {line!r}")
            words[wnid.strip()] = name.strip()
    return [words.get(w, w) for w in wnids]


def _val_files(folder: Path, wnids: list[str]) -> dict[str, list[Path]]:
    """val/val_annotations.txt (`<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>`) -> {wnid: images}."""
    ann = folder / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"Tiny ImageNet validation labels {ann} not found")
    known = set(wnids)
    files: dict[str, list[Path]] = {}
    for n, line in enumerate(_read_lines(ann), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{ann} line {n}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in known:
            raise DataError(f"{ann} line {n}: class {wnid!r} is not in wnids.txt")
        image = folder / "images" / name
        if not image.is_file():
            raise DataError(f"{ann} line {n}: image {image} not found")
        files.setdefault(wnid, []).append(image)
    if not files:
        raise DataError(f"{ann} has no annotations")
    return files


def load_tiny_imagenet(root: str | os.PathLike, *, split: str, size: int | None = None) -> ArrayDataset:
    """Read the Tiny ImageNet train or val split.

    Args:
        root: the `tiny-imagenet-200` folder or its parent.
        split: "train" (500 images per class) or "val" (50 per class, labels from val_annotations.txt).
        size: resize to size x size (bilinear); None keeps the native 64x64.
    Returns:
        ArrayDataset, images uint8 (N, 3, H, W) (grayscale files converted to RGB); classes are
        the wnids in wnids.txt order; meta["class_names"] holds words.txt names when present.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"Tiny ImageNet split must be 'train' or 'val', got {split!r}")
    folder = _find_folder(Path(root))
    wnids = _read_wnids(folder / "wnids.txt")
    if split == "train":
        files = {w: list_images(folder / "train" / w / "images") for w in wnids}
    else:
        files = _val_files(folder / "val", wnids)
    words = folder / "words.txt"
    names = _read_words(words, wnids) if words.is_file() else list(wnids)
    meta = {"source": "tiny-imagenet", "path": str(folder), "class_names": names}
    return build_dataset(files, wnids, size=size, channels=3, meta=meta)
