"""In-memory image datasets: the one type every reader returns and every loop consumes."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DataError
from ._cache import MappedImages

__all__ = ["ArrayDataset", "data_root", "require_classes", "DEBIAN_FMNIST"]

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class ArrayDataset(torch.utils.data.Dataset):
    """Images and labels held as tensors.

    images: (N, C, H, W), uint8 in [0, 255] or float32 in [0, 1]; or a MappedImages (uint8 rows of a
        memory-mapped cache file: a folder larger than memory), which indexes into tensors the same way.
    labels: (N,) int64 in [0, len(classes)).
    """

    images: Tensor | MappedImages
    labels: Tensor
    classes: list[str]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.to_float(self.images[i]), self.labels[i]

    @staticmethod
    def to_float(x: Tensor) -> Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # (C, H, W)

    def subset(self, index: Tensor) -> "ArrayDataset":
        """The selected rows; per-image meta tensors (length N, e.g. Yearbook's gender) are indexed too."""
        n = len(self)
        meta = {k: v[index] if isinstance(v, Tensor) and v.ndim >= 1 and len(v) == n else v for k, v in self.meta.items()}
        images = self.images.subset(index) if isinstance(self.images, MappedImages) else self.images[index]
        return ArrayDataset(images, self.labels[index], self.classes, meta)

    def class_counts(self) -> Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    @classmethod
    def from_torch(cls, data: "torch.utils.data.Dataset | torch.utils.data.DataLoader | ArrayDataset", *,
                   classes: list[str] | None = None, limit: int | None = None) -> "ArrayDataset":
        """Any map-style torch Dataset of (image tensor, label) pairs, or a DataLoader over one, held in memory.

        Images must already be tensors (C, H, W): float in [0, 1] (`transform=ToTensor()`), stored as
        float32, or uint8 in [0, 255] (`PILToTensor()`), stored as uint8. A shuffling DataLoader gives a
        different order (and, with `limit`, a different subset) on every call. `classes` defaults to the dataset's own
        `classes` attribute, else the labels seen. `limit` caps the number of images read.
        """
        if isinstance(data, ArrayDataset):
            return data if limit is None else data.subset(torch.arange(min(limit, len(data))))
        loader = data if isinstance(data, torch.utils.data.DataLoader) else torch.utils.data.DataLoader(data, batch_size=256)
        xs, ys, n = [], [], 0
        for x, y in loader:
            if not isinstance(x, Tensor) or x.ndim != 4:
                raise DataError("from_torch needs batches of image tensors (N, C, H, W): add transform=ToTensor() "
                                f"to the dataset (got {type(x).__name__}{tuple(getattr(x, 'shape', ()))})")
            xs.append(x if x.dtype == torch.uint8 else x.float())  # uint8 stays [0, 255]: to_float scales it
            ys.append(torch.as_tensor(y).long())
            n += len(y)
            if limit is not None and n >= limit:
                break
        if not xs:
            raise DataError("from_torch: the dataset is empty")
        images, labels = torch.cat(xs)[:limit], torch.cat(ys)[:limit]
        dataset = loader.dataset
        names = classes or getattr(dataset, "classes", None) or [str(c) for c in range(int(labels.max()) + 1)]
        return cls(images, labels, list(names))


def require_classes(where: str | os.PathLike, classes: list[str]) -> list[str]:
    """`classes` if there are at least two: one class cannot train or score a classifier."""
    if len(classes) < 2:
        raise DataError(f"{where}: found {len(classes)} class{'es' if len(classes) != 1 else ''} "
                        f"{classes}; a classifier needs at least 2 class folders")
    return classes


def data_root(path: str | os.PathLike | None = None, default: Path = DEBIAN_FMNIST) -> Path:
    """Where data lives: the argument, else $SHIFTKIT_DATA, else `default` (Debian's Fashion-MNIST)."""
    root = Path(path) if path else Path(os.environ["SHIFTKIT_DATA"]) if os.environ.get("SHIFTKIT_DATA") else default
    if not root.exists():
        raise DataError(f"data path {root} does not exist (pass a path or set SHIFTKIT_DATA)")
    return root
