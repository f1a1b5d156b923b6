"""Named datasets as lists of Domains: the one path the CLI and benchmarks load data through."""
from __future__ import annotations

import inspect
import os

import torch

from .._registry import Registry
from ..errors import ConfigError, DataError
from .base import ArrayDataset, data_root
from .cifar import load_cifar
from .domains import Domain, split_domain
from .drift import drift_fmnist
from .folders import is_presplit, load_clear, load_image_folder, load_presplit, load_yearbook
from .idx import load_fashion_mnist
from .tinyimagenet import load_tiny_imagenet

__all__ = ["DATASETS", "load_domains", "register_dataset", "describe"]

DATASETS: Registry[list[Domain]] = Registry("dataset")
register_dataset = DATASETS.register


def load_domains(name: str, root=None, **kwargs) -> list[Domain]:
    """Load a named dataset as its list of domains (see `DATASETS.names()`).

    Keyword options are the reader's own (e.g. image_folder's size and channels); an unknown one is a
    ConfigError listing the valid ones.
    """
    reader = DATASETS.get(name)
    valid = [p.name for p in inspect.signature(reader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"dataset {name!r}: unknown option(s) {unknown}; valid: {', '.join(valid)}")
    return reader(root, **kwargs)


def _required(root, name: str):
    """Datasets without a Debian package need an explicit location."""
    if root is None and not os.environ.get("SHIFTKIT_DATA"):
        raise DataError(f"dataset {name!r} needs a path: pass --root / root= or set SHIFTKIT_DATA")
    return data_root(root)


def _train_test(train: ArrayDataset, test: ArrayDataset, name: str = "clean") -> list[Domain]:
    """Official train (split 90/10 into train/val) and the official test set as one domain."""
    d = split_domain(name, train, fractions=(0.9, 0.1, 0.0), seed=42)
    return [Domain(name, d.train, d.val, test)]


def _split_all(parts: dict[str, ArrayDataset], *, stratify_key: str | None = None) -> list[Domain]:
    return [split_domain(n, ds, stratify=ds.meta.get(stratify_key) if stratify_key else None) for n, ds in parts.items()]


@register_dataset("driftfmnist")
def _driftfmnist(root=None, *, seed: int = 0, bins: int = 8) -> list[Domain]:
    return drift_fmnist(root, bins=bins, seed=seed)


@register_dataset("driftfmnist_complementary")
def _driftfmnist_complementary(root=None, *, seed: int = 0) -> list[Domain]:
    return drift_fmnist(root, kind="complementary", seed=seed)


@register_dataset("fashion_mnist")
def _fashion_mnist(root=None, *, seed: int = 0) -> list[Domain]:
    return _train_test(load_fashion_mnist(root, train=True), load_fashion_mnist(root, train=False))


@register_dataset("cifar10")
def _cifar10(root=None, *, seed: int = 0) -> list[Domain]:
    root = _required(root, "cifar10")
    return _train_test(load_cifar(root, train=True), load_cifar(root, train=False))


@register_dataset("cifar100")
def _cifar100(root=None, *, seed: int = 0) -> list[Domain]:
    root = _required(root, "cifar100")
    return _train_test(load_cifar(root, train=True, coarse=True), load_cifar(root, train=False, coarse=True))


@register_dataset("tiny_imagenet")
def _tiny_imagenet(root=None, *, seed: int = 0) -> list[Domain]:
    """Tiny ImageNet's labelled val set serves as the test set (its test split has no labels)."""
    root = _required(root, "tiny_imagenet")
    return _train_test(load_tiny_imagenet(root, split="train"), load_tiny_imagenet(root, split="val"))


@register_dataset("image_folder")
def _image_folder(root=None, *, seed: int = 0, size: int = 32, channels: int = 3, storage: str = "auto",
                  cache_dir: str | None = None) -> list[Domain]:
    """root/<domain>/<class>/<img>, or pre-split root/<domain>/{train,val,test}/<class>/<img> (splits kept).

    Images are resized to size x size and read as RGB (channels=3) or grayscale (channels=1). storage:
    "memory", "cache" (decoded once into a memory-mapped file under cache_dir) or "auto" (cache past 1 GiB).
    """
    root = _required(root, "image_folder")
    if channels not in (1, 3):
        raise DataError(f"image_folder: channels={channels!r}; valid: 1 (grayscale), 3 (RGB)")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
        raise DataError(f"image_folder: size={size!r} must be an integer in 1..4096 (pixels per side)")
    if not is_presplit(root):
        return _split_all(load_image_folder(root, size=size, channels=channels, storage=storage, cache_dir=cache_dir))
    domains = []
    for name, splits in load_presplit(root, size=size, channels=channels, storage=storage, cache_dir=cache_dir).items():
        missing = [s for s in ("train", "val", "test") if s not in splits]
        if missing:
            raise DataError(f"{root}/{name}: pre-split domain lacks {missing}")
        domains.append(Domain(name, splits["train"], splits["val"], splits["test"]))
    return domains


@register_dataset("yearbook")
def _yearbook(root=None, *, seed: int = 0, size: int = 32, storage: str = "auto",
              cache_dir: str | None = None) -> list[Domain]:
    """Portraits: gender classification, domains = decades, splits stratified by gender."""
    return _split_all(load_yearbook(_required(root, "yearbook"), task="gender", size=size, storage=storage,
                                    cache_dir=cache_dir), stratify_key="gender")


@register_dataset("yearbook_grasp")
def _yearbook_grasp(root=None, *, seed: int = 0, size: int = 32, storage: str = "auto",
                    cache_dir: str | None = None) -> list[Domain]:
    """The GRASP paper's Yearbook task: 4 periods, earlier vs later decade, splits stratified by gender."""
    return _split_all(load_yearbook(_required(root, "yearbook_grasp"), task="grasp", size=size, storage=storage,
                                    cache_dir=cache_dir), stratify_key="gender")


@register_dataset("clear")
def _clear(root=None, *, seed: int = 0, size: int = 64, storage: str = "auto", cache_dir: str | None = None) -> list[Domain]:
    """CLEAR-10/100 raw buckets merged into the GRASP paper's 2-year bins year_1-2 ... year_9-10."""
    return _split_all(load_clear(_required(root, "clear"), bins=5, size=size, storage=storage, cache_dir=cache_dir))


def describe(domains: list[Domain]) -> list[dict]:
    """Per-domain sizes and class balance (for `shiftkit data`)."""
    rows = []
    for d in domains:
        counts = torch.bincount(d.train.labels, minlength=len(d.classes))
        rows.append({"domain": d.name, "train": len(d.train), "val": len(d.val), "test": len(d.test),
                     "shape": list(d.train.shape), "min_class_train": int(counts.min()), "max_class_train": int(counts.max()),
                     "mean_pixel": float(ArrayDataset.to_float(d.test.images[:2000]).mean())})
    return rows
