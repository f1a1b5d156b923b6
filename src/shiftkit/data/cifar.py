"""CIFAR-10 / CIFAR-100 from the original python pickle batches.

Reference: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009;
layout as distributed at https://www.cs.toronto.edu/~kriz/cifar.html
(`cifar-10-batches-py/`, `cifar-100-python/`).

Pickles are read with a restricted unpickler that resolves only the numpy globals an
array needs, so a hostile file cannot run code.
"""
from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import read_regular
from ..errors import DataError
from .base import ArrayDataset

__all__ = ["load_cifar", "CIFAR10_FOLDER", "CIFAR100_FOLDER"]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
_ROW = 3 * 32 * 32  # one image per row: 1024 red, 1024 green, 1024 blue values
_MAX_FILE = 1 << 30  # the largest real batch (CIFAR-100 train) is 155 MB
_SLACK = 1 << 20  # what small pickles may build beyond their own size (Python object overhead)


def _numpy_module(name: str) -> Any:
    """numpy 2 moved numpy.core to numpy._core; import whichever exists, without warnings."""
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


class _NdarrayName:
    """What a pickle gets for `numpy.ndarray`: only the first argument of _reconstruct. Calling it
    (`ndarray((3 << 30,))` allocates gigabytes from a few bytes) is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray called directly; refused")


_NDARRAY = _NdarrayName()


def _safe_globals(limit: int) -> dict[tuple[str, str], Any]:
    """The globals an array pickle needs, each refusing to build more than `limit` bytes (the pickle's
    own size): an allow-list bounds what is called, this bounds how much it may allocate."""
    multiarray, numeric = _numpy_module("multiarray"), _numpy_module("numeric")

    def check(nbytes: int, what: str) -> None:
        if nbytes > limit:
            raise pickle.UnpicklingError(f"{what} would take {nbytes} bytes, more than this pickle may build "
                                         f"({limit}); refused")

    class Bounded(np.ndarray):
        """The array _reconstruct returns: BUILD's __setstate__ may give it a new shape, checked first."""

        def __setstate__(self, state: Any) -> None:
            if isinstance(state, tuple) and len(state) == 5:
                shape, dt = state[1], np.dtype(state[2])
                check(int(np.prod(shape, dtype=object)) * max(dt.itemsize, 8 if dt.hasobject else 1),
                      f"array of shape {shape}")
            super().__setstate__(state)

    def dtype(*args: Any, **kwargs: Any) -> np.dtype:
        d = np.dtype(*args, **kwargs)
        check(d.itemsize, f"dtype {d}")
        return d

    def reconstruct(subtype: Any, shape: Any, dt: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise pickle.UnpicklingError("numpy _reconstruct of something other than numpy.ndarray; refused")
        check(int(np.prod(shape, dtype=object)) * np.dtype(dt).itemsize, f"array of shape {shape}")
        return multiarray._reconstruct(Bounded, shape, dt)

    def bytes_array(*args: Any) -> bytearray:
        check(max([a for a in args if isinstance(a, int)], default=0), "bytearray")
        return bytearray(*args)

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol 2 writes bytes (sized by the pickle's own text)
        ("builtins", "bytearray"): bytes_array,
        ("__builtin__", "bytearray"): bytes_array,
    }
    for core in ("numpy.core", "numpy._core"):  # pickles name either, whatever numpy reads them
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar  # sized by its bytes argument
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # a view of bytes from the pickle
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the bounded globals of _safe_globals; anything else is refused."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")  # BytesIO: a claimed length never pre-allocates
        self._allowed = _safe_globals(len(data) + _SLACK)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _unpickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle -> dict with str keys."""
    data = read_regular(path, DataError, "CIFAR file", max_bytes=_MAX_FILE)
    try:
        obj = _SafeUnpickler(data).load()
    except Exception as e:  # a corrupt or hostile pickle can fail in nearly any way
        raise DataError(f"{path} is not a readable CIFAR pickle: {type(e).__name__}: {str(e)[:300]}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a CIFAR dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _get(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise DataError(f"{path} has no key {key!r} (keys: {sorted(d)})")
    return d[key]


def _names(path: Path, key: str) -> list[str]:
    names = _get(_unpickle(path), key, path)
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"{path}: {key!r} must be a non-empty list of class names")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {key!r} holds a class name that is not UTF-8 ({e})") from e


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 3, 32, 32), labels int64 (N,)."""
    d = _unpickle(path)
    data, labels = np.asarray(_get(d, "data", path)), np.asarray(_get(d, label_key, path))
    if data.ndim != 2 or data.shape[1] != _ROW:
        raise DataError(f"{path}: 'data' must have rows of {_ROW} values (3x32x32), got shape {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images in 'data' but {labels.size} entries in {label_key!r}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (labels.min() < 0 or labels.max() >= num_classes)):
        raise DataError(f"{path}: {label_key!r} must be integers in [0, {num_classes})")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or (data.size and (data.min() < 0 or data.max() > 255)):
            raise DataError(f"{path}: 'data' must be uint8 pixel values, got dtype {data.dtype}")
        data = data.astype(np.uint8)
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)  # (N, C, H, W)


def _find_folder(root: Path, coarse: bool) -> tuple[Path, bool]:
    """The batches folder under or at `root`, and whether it is CIFAR-100."""
    if (root / "batches.meta").is_file():
        return root, False
    if (root / "meta").is_file():
        return root, True
    c10, c100 = (root / CIFAR10_FOLDER).is_dir(), (root / CIFAR100_FOLDER).is_dir()
    if c100 and (coarse or not c10):
        return root / CIFAR100_FOLDER, True
    if c10 and not c100:
        return root / CIFAR10_FOLDER, False
    if c10 and c100:
        raise DataError(f"{root} holds both {CIFAR10_FOLDER} and {CIFAR100_FOLDER}: pass the one to read")
    raise DataError(f"{root} is not a CIFAR folder: expected batches.meta (CIFAR-10), meta (CIFAR-100), "
                    f"or a {CIFAR10_FOLDER}/ or {CIFAR100_FOLDER}/ sub-folder")


def load_cifar(root: str | os.PathLike, *, train: bool, coarse: bool = False) -> ArrayDataset:
    """Read CIFAR-10 or CIFAR-100 (told apart by their meta file) from the python batches.

    Args:
        root: the batches folder (`cifar-10-batches-py`, `cifar-100-python`) or its parent.
        train: the 50,000 training images, else the 10,000 test images.
        coarse: CIFAR-100 only: the 20 superclass labels instead of the 100 fine ones.
    Returns:
        ArrayDataset with images uint8 (N, 3, 32, 32) and the meta file's class names.
    """
    folder, is100 = _find_folder(Path(root), coarse)
    if is100:
        kind = "coarse" if coarse else "fine"
        classes = _names(folder / "meta", f"{kind}_label_names")
        label_key, files = f"{kind}_labels", [folder / ("train" if train else "test")]
    else:
        if coarse:
            raise DataError(f"{folder} is CIFAR-10, which has no coarse labels")
        classes = _names(folder / "batches.meta", "label_names")
        label_key = "labels"
        files = [folder / f"data_batch_{i}" for i in range(1, 6)] if train else [folder / "test_batch"]
    batches = [_read_batch(f, label_key, len(classes)) for f in files]
    images = torch.from_numpy(np.concatenate([b[0] for b in batches]))  # (N, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))  # (N,)
    name = ("cifar100" + ("-coarse" if coarse else "")) if is100 else "cifar10"
    return ArrayDataset(images, labels, classes, {"source": name, "path": str(folder)})
