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
from ._cache import MappedImages, cached_images
from ._pixels import to_uint8
from .base import ArrayDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "natural_key",
    "subdirs",
    "list_images",
    "scan_classes",
    "read_image",
    "read_images",
    "load_images",
    "choose_storage",
    "STORAGES",
    "AUTO_CACHE_BYTES",
    "build_dataset",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# PIL decodes in C and releases the GIL, so a few threads speed up large folders.
_THREADS = min(8, os.cpu_count() or 1)
_THREADED_FROM = 256  # below this many files, threads cost more than they save
STORAGES = ("auto", "memory", "cache")
# "auto" caches on disk above 1 GiB of decoded pixels (~7k RGB images at 224 px): below it a folder is
# decoded into memory as it always was (the existing benchmarks' folders); above it memory runs out first.
AUTO_CACHE_BYTES = 1 << 30
# PIL sniffs the format from the bytes, not the extension, and its decoders raise nearly anything on a
# hostile file (OSError, SyntaxError for broken PNG chunks, NotImplementedError for unknown DDS flags,
# struct.error, MemoryError...): any failure to decode one file is that file's DataError.
_PIL_ERRORS = (Exception,)


# single-channel modes wider than 8 bits (I;16 PNG, 32-bit int and float TIFF): converted by their real range
# (data/_pixels.py) instead of PIL's convert, which clips 16-bit values at 255 and reads floats in [0, 1] as black
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


MAX_SIZE = 4096  # the largest resize side a reader accepts (image_folder's own limit; 4096^2 x 3 = 48 MiB an image)


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
            if img.mode in _WIDE_MODES:  # 16-bit / 32-bit int / float: PIL's convert would clip at 255
                img = Image.fromarray(to_uint8(np.asarray(img), f"image {path}"), mode="L")
            img = img.convert("RGB" if channels == 3 else "L")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except _PIL_ERRORS as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _check(size: int | None, channels: int, paths: Sequence[Path]) -> None:
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE):
        # every image is resized to size x size before stacking: 10^6 would allocate terabytes
        raise ConfigError(f"size={size!r} must be an integer in 1..{MAX_SIZE} (pixels per side; data.options.size)")
    if not paths:
        raise DataError("no image files to read")


def _fill(out: np.ndarray, paths: Sequence[Path], *, size: int | None, channels: int) -> None:
    """Decode paths[1:] into out[1:] (out[0] holds the first image, whose shape every image must have)."""
    def load(i: int) -> None:
        arr = read_image(paths[i], size=size, channels=channels)
        if arr.shape != out.shape[1:]:
            raise DataError(f"image {paths[i]} has shape {arr.shape[1:]} but {paths[0]} has "
                            f"{tuple(out.shape[2:])} (pass size= to resize all images)")
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


def read_images(paths: Sequence[Path], *, size: int | None = None, channels: int = 3) -> Tensor:
    """Decode and stack images into uint8 (N, C, H, W) in memory; every image must end up the same shape."""
    _check(size, channels, paths)
    return _in_memory(paths, read_image(paths[0], size=size, channels=channels), size=size, channels=channels)


def _in_memory(paths: Sequence[Path], first: np.ndarray, *, size: int | None, channels: int) -> Tensor:
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)  # (N, C, H, W)
    out[0] = first
    _fill(out, paths, size=size, channels=channels)
    return torch.from_numpy(out)


def load_images(paths: Sequence[Path], *, size: int | None = None, channels: int = 3, storage: str = "auto",
                cache_dir: str | os.PathLike | None = None) -> Tensor | MappedImages:
    """Images as uint8 (N, C, H, W): in memory, or decoded once into a memory-mapped cache file.

    Args:
        storage: "memory" (a tensor), "cache" (a MappedImages over a cache file), or "auto": "cache" when
            the decoded pixels would pass AUTO_CACHE_BYTES, else "memory".
        cache_dir: the cache folder; default $SHIFTKIT_CACHE or ~/.cache/shiftkit/images.
    """
    if storage not in STORAGES:
        raise ConfigError(f"storage={storage!r}; valid: {', '.join(STORAGES)}")
    if storage == "memory":
        return read_images(paths, size=size, channels=channels)
    _check(size, channels, paths)
    first = read_image(paths[0], size=size, channels=channels)
    if storage == "auto" and len(paths) * first.nbytes <= AUTO_CACHE_BYTES:
        return _in_memory(paths, first, size=size, channels=channels)
    return cached_images(paths, first, lambda out: _fill(out, paths, size=size, channels=channels),
                         size=size, channels=channels, folder=cache_dir)


def choose_storage(storage: str, paths: Sequence[Path], *, size: int | None, channels: int) -> str:
    """"memory" or "cache" for a reader about to decode `paths`, all of its domains' files: "auto" compares their
    decoded size with AUTO_CACHE_BYTES, so many domains that fit one by one but not together are cached."""
    if storage not in STORAGES:
        raise ConfigError(f"storage={storage!r}; valid: {', '.join(STORAGES)}")
    if storage != "auto" or not paths:
        return storage
    per_image = channels * size * size if size is not None else read_image(paths[0], channels=channels).nbytes
    return "cache" if len(paths) * per_image > AUTO_CACHE_BYTES else "memory"


def build_dataset(files: dict[str, list[Path]], classes: Sequence[str], *, size: int | None = None,
                  channels: int = 3, meta: dict | None = None, storage: str = "auto",
                  cache_dir: str | os.PathLike | None = None) -> ArrayDataset:
    """{class: images} -> ArrayDataset labelled by each class's index in `classes`."""
    unknown = set(files) - set(classes)
    if unknown:
        raise DataError(f"classes {sorted(unknown)} are not in the class list {list(classes)}")
    paths = [p for c in classes for p in files.get(c, [])]
    labels = [i for i, c in enumerate(classes) for _ in files.get(c, [])]
    images = load_images(paths, size=size, channels=channels, storage=storage, cache_dir=cache_dir)
    return ArrayDataset(images, torch.tensor(labels, dtype=torch.int64), list(classes), dict(meta or {}))
