"""Image files on disk -> uint8 tensors: listing, PIL decoding, resizing, stacking.

The one mechanism behind every folder-based reader (Tiny ImageNet, image folders,
CLEAR, Yearbook): errors name the offending file or folder.
"""
from __future__ import annotations

import os
import re
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .._files import open_regular
from ..errors import ConfigError, DataError
from .base import ArrayDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "natural_key",
    "subdirs",
    "list_images",
    "scan_classes",
    "read_image",
    "read_images",
    "build_dataset",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# PIL decodes in C and releases the GIL, so a few threads speed up large folders.
_THREADS = min(8, os.cpu_count() or 1)
_THREADED_FROM = 256  # below this many files, threads cost more than they save
# PIL sniffs the format from the bytes, not the extension, and its decoders raise nearly anything on a
# hostile file (OSError, SyntaxError for broken PNG chunks, NotImplementedError for unknown DDS flags,
# struct.error, MemoryError...): any failure to decode one file is that file's DataError.
_PIL_ERRORS = (Exception,)


def natural_key(name: str) -> tuple:
    """Sort key ordering digit runs by value: "2" < "10", "img_9" < "img_10"."""
    parts = [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]
    return parts, name


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder` in natural order."""
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist")
    dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for p in dirs:  # names become domain / class names in checkpoints and results, which are UTF-8
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(p.name).decode("utf-8", "replace")
            raise DataError(f"folder {folder}: sub-folder name {shown!r} is not valid UTF-8; rename it") from None
    return sorted(dirs, key=lambda p: natural_key(p.name))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, natural order; DataError if missing or empty."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not files:
        raise DataError(f"image folder {folder} is empty (no {'/'.join(sorted(IMAGE_EXTENSIONS))} files)")
    return sorted(files, key=lambda p: natural_key(p.name))


def scan_classes(folder: Path, classes: Collection[str] | None = None) -> dict[str, list[Path]]:
    """`folder/<class>/<image>` -> {class: images}; only `classes` when given."""
    dirs = [d for d in subdirs(folder) if classes is None or d.name in classes]
    if classes is None and not dirs:
        raise DataError(f"{folder} has no class sub-folders")
    return {d.name: list_images(d) for d in dirs}


def read_image(path: Path, *, size: int | None = None, channels: int = 3) -> np.ndarray:
    """Decode one image to uint8 (C, H, W); resized to size x size (bilinear) when given."""
    try:
        with open_regular(path, DataError, "image") as f, Image.open(f) as img:  # reads the header only
            if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:  # refuse before decoding
                raise DataError(f"image {path} is {img.width}x{img.height} pixels, past PIL's decompression-bomb "
                                f"limit of {Image.MAX_IMAGE_PIXELS} (raise PIL.Image.MAX_IMAGE_PIXELS if it is real)")
            img = img.convert("RGB" if channels == 3 else "L")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except _PIL_ERRORS as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def read_images(paths: Sequence[Path], *, size: int | None = None, channels: int = 3) -> Tensor:
    """Decode and stack images into uint8 (N, C, H, W); every image must end up the same shape."""
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if size is not None and size < 1:
        raise ConfigError(f"size must be a positive number of pixels, got {size}")
    if not paths:
        raise DataError("no image files to read")
    first = read_image(paths[0], size=size, channels=channels)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)  # (N, C, H, W)
    out[0] = first

    def load(i: int) -> None:
        arr = read_image(paths[i], size=size, channels=channels)
        if arr.shape != first.shape:
            raise DataError(f"image {paths[i]} has shape {arr.shape[1:]} but {paths[0]} has "
                            f"{first.shape[1:]} (pass size= to resize all images)")
        out[i] = arr

    rest = range(1, len(paths))
    if len(paths) < _THREADED_FROM or _THREADS == 1:
        for i in rest:
            load(i)
    else:
        pool = ThreadPoolExecutor(_THREADS)
        try:
            for _ in pool.map(load, rest):  # re-raises the first failure in order
                pass
        finally:
            pool.shutdown(cancel_futures=True)
    return torch.from_numpy(out)


def build_dataset(files: dict[str, list[Path]], classes: Sequence[str], *, size: int | None = None,
                  channels: int = 3, meta: dict | None = None) -> ArrayDataset:
    """{class: images} -> ArrayDataset labelled by each class's index in `classes`."""
    unknown = set(files) - set(classes)
    if unknown:
        raise DataError(f"classes {sorted(unknown)} are not in the class list {list(classes)}")
    paths = [p for c in classes for p in files.get(c, [])]
    labels = [i for i, c in enumerate(classes) for _ in files.get(c, [])]
    images = read_images(paths, size=size, channels=channels)
    return ArrayDataset(images, torch.tensor(labels, dtype=torch.int64), list(classes), dict(meta or {}))
