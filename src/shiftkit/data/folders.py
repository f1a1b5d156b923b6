"""Image-folder layouts of the temporal-shift benchmarks: generic domain folders,
pre-split folders, CLEAR raw buckets, and Yearbook (Portraits).

References:
    Lin et al., "The CLEAR Benchmark: Continual LEArning on Real-World Imagery", NeurIPS 2021.
    Ginosar et al., "A Century of Portraits", ICCV Workshops 2015 (Yearbook / Portraits).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from ._images import build_dataset, choose_storage, list_images, load_images, natural_key, scan_classes, subdirs
from .base import ArrayDataset, require_classes

__all__ = [
    "load_image_folder",
    "load_presplit",
    "is_presplit",
    "load_clear",
    "load_yearbook",
    "SPLITS",
    "CLEAR_BUCKETS",
    "YEARBOOK_FOLDER",
    "YEARBOOK_PERIODS",
]

SPLITS = ("train", "val", "test")
CLEAR_BUCKETS = 10  # labelled buckets 1..10 (CLEAR-100 adds an 11th, dropped when binning)
YEARBOOK_FOLDER = "faces_aligned_small_mirrored_co_aligned_cropped_cleaned"
# GRASP Yearbook periods: (name, first year of the next period, first year labelled "later").
# The label splits each period's decades into an earlier and a later half.
YEARBOOK_PERIODS = (
    ("before_1950s", 1950, 1930),  # 1900s-1920s vs 1930s-1940s
    ("1950s_1960s", 1970, 1960),  # 1950s vs 1960s
    ("1970s_1980s", 1990, 1980),  # 1970s vs 1980s
    ("1990s_and_later", 10_000, 2000),  # 1990s vs 2000s and later
)
_GENDERS = ("F", "M")


def _union_classes(scans: list[dict[str, list[Path]]], root: Path) -> list[str]:
    return require_classes(root, sorted({c for scan in scans for c in scan}))


def load_image_folder(root: str | os.PathLike, *, size: int | None = None, channels: int = 3,
                      storage: str = "auto", cache_dir: str | os.PathLike | None = None) -> dict[str, ArrayDataset]:
    """Read `root/<domain>/<class>/<image>` into one dataset per domain.

    Args:
        root: folder of domain folders (e.g. years or year bins).
        size: resize to size x size (bilinear); None keeps native sizes, which must then agree.
        channels: 3 (RGB) or 1 (grayscale).
        storage, cache_dir: in memory, or a memory-mapped decode cache (see `_images.load_images`).
    Returns:
        {domain: ArrayDataset} in natural domain order ("2" before "10"); classes are the
        sorted union over domains, so a class has the same index in every domain.
    """
    root = Path(root)
    if is_presplit(root):
        raise DataError(f"{root} holds <domain>/train|val|test folders: read it with load_presplit")
    scans = {d.name: scan_classes(d) for d in subdirs(root)}
    if not scans:
        raise DataError(f"{root} has no domain folders")
    classes = _union_classes(list(scans.values()), root)
    every = [p for files in scans.values() for paths in files.values() for p in paths]
    storage = choose_storage(storage, every, size=size, channels=channels)
    return {name: build_dataset(files, classes, size=size, channels=channels, meta={"domain": name},
                                storage=storage, cache_dir=cache_dir)
            for name, files in scans.items()}


def is_presplit(root: str | os.PathLike) -> bool:
    """Whether `root` is `<domain>/{train,val,test}/<class>/<img>`: every domain has a train folder
    and nothing but split folders."""
    root = Path(root)
    domains = subdirs(root) if root.is_dir() else []
    return bool(domains) and all(
        (d / "train").is_dir() and {s.name for s in subdirs(d)} <= set(SPLITS) for d in domains)


def load_presplit(root: str | os.PathLike, *, size: int | None = None, channels: int = 3, storage: str = "auto",
                  cache_dir: str | os.PathLike | None = None) -> dict[str, dict[str, ArrayDataset]]:
    """Read `root/<domain>/{train,val,test}/<class>/<image>` keeping the given splits.

    Returns:
        {domain: {split: ArrayDataset}} with the splits each domain has (train always);
        classes are the sorted union over all domains and splits.
    """
    root = Path(root)
    if not is_presplit(root):
        raise DataError(f"{root} is not pre-split: expected <domain>/train[/val/test]/<class>/<image>")
    scans = {d.name: {s: scan_classes(d / s) for s in SPLITS if (d / s).is_dir()} for d in subdirs(root)}
    classes = _union_classes([scan for splits in scans.values() for scan in splits.values()], root)
    every = [p for splits in scans.values() for files in splits.values() for paths in files.values() for p in paths]
    storage = choose_storage(storage, every, size=size, channels=channels)
    return {name: {s: build_dataset(files, classes, size=size, channels=channels,
                                    meta={"domain": name, "split": s}, storage=storage, cache_dir=cache_dir)
                   for s, files in splits.items()}
            for name, splits in scans.items()}


def _clear_groups(buckets: dict[int, Path], bins: int | None, folder: Path) -> list[tuple[str, list[Path]]]:
    """Domains as (name, bucket folders): one per bucket, or `bins` equal runs of buckets 1..10."""
    if bins is None:
        return [(str(b), [buckets[b]]) for b in sorted(buckets)]
    if bins < 1 or CLEAR_BUCKETS % bins:
        raise ConfigError(f"CLEAR bins must divide the {CLEAR_BUCKETS} buckets (1, 2, 5 or 10), got {bins}")
    missing = [b for b in range(1, CLEAR_BUCKETS + 1) if b not in buckets]
    if missing:
        raise DataError(f"{folder} lacks CLEAR bucket folders {missing}, needed to make {bins} bins")
    width = CLEAR_BUCKETS // bins
    groups = []
    for lo in range(1, CLEAR_BUCKETS + 1, width):
        hi = lo + width - 1
        groups.append((f"year_{lo}-{hi}" if width > 1 else f"year_{lo}", [buckets[b] for b in range(lo, hi + 1)]))
    return groups


def load_clear(root: str | os.PathLike, *, bins: int | None = None, classes: list[str] | None = None,
               size: int | None = 64, channels: int = 3, storage: str = "auto",
               cache_dir: str | os.PathLike | None = None) -> dict[str, ArrayDataset]:
    """Read raw CLEAR-10/100: `labeled_images/<bucket>/<class>/<image>`, domain = time bucket.

    Args:
        root: the `labeled_images` folder or its parent.
        bins: None keeps one domain per bucket ("1", ..., "11"); bins=5 merges buckets into
            2-year bins year_1-2 ... year_9-10 as GRASP does. Binning uses buckets 1..10 only:
            CLEAR-100's bucket 11 (and any bucket 0) is dropped.
        classes: a class subset (e.g. GRASP's 30 CLEAR-100 classes), labelled in the given
            order; None reads every class, sorted.
        size: resize to size x size; CLEAR photos vary in size, and 64 px keeps CLEAR-10
            (~33k images) near 400 MB in memory.
        channels: 3 (RGB) or 1 (grayscale).
    Returns:
        {domain: ArrayDataset} in time order.
    """
    root = Path(root)
    folder = root / "labeled_images" if (root / "labeled_images").is_dir() else root
    dirs = subdirs(folder)
    bad = [d.name for d in dirs if not d.name.isdigit()]
    if bad or not dirs:
        raise DataError(f"{folder} must hold numbered CLEAR bucket folders, found {bad or 'none'}")
    groups = _clear_groups({int(d.name): d for d in dirs}, bins, folder)
    if classes is None:
        classes = require_classes(folder, sorted({c.name for _, members in groups for b in members for c in subdirs(b)}))
    else:
        found = {c.name for _, members in groups for b in members for c in subdirs(b)}
        unknown = [c for c in classes if c not in found]
        if unknown or len(set(classes)) != len(classes):
            raise DataError(f"classes {unknown or classes} not found (or repeated) in the buckets of {folder}")
    scans = {}
    for name, members in groups:
        files: dict[str, list[Path]] = {}
        for bucket in members:
            for c, paths in scan_classes(bucket, set(classes)).items():
                files.setdefault(c, []).extend(paths)
        if not files:
            raise DataError(f"CLEAR domain {name} ({', '.join(str(b) for b in members)}) "
                            f"has no images of the chosen classes")
        scans[name] = files
    every = [p for files in scans.values() for paths in files.values() for p in paths]
    storage = choose_storage(storage, every, size=size, channels=channels)
    return {name: build_dataset(files, classes, size=size, channels=channels,
                                meta={"domain": name, "buckets": [int(b.name) for b in members]},
                                storage=storage, cache_dir=cache_dir)
            for (name, members), files in zip(groups, scans.values())}


def _year(path: Path) -> int:
    m = re.match(r"(\d{4})", path.name)
    if m is None:
        raise DataError(f"Yearbook image {path} does not start with a 4-digit year")
    return int(m.group(1))


def _column(rows: list[tuple], i: int) -> torch.Tensor:
    return torch.tensor([r[i] for r in rows], dtype=torch.int64)  # (N,)


def _period(year: int) -> tuple[str, int]:
    """GRASP period name and binary label (0 = earlier half of its decades, 1 = later)."""
    for name, end, later_from in YEARBOOK_PERIODS:
        if year < end:
            return name, int(year >= later_from)
    raise DataError(f"year {year} is past the last Yearbook period")


def load_yearbook(root: str | os.PathLike, *, task: str = "gender", domain_width: int = 10,
                  size: int | None = 32, channels: int = 3, storage: str = "auto",
                  cache_dir: str | os.PathLike | None = None) -> dict[str, ArrayDataset]:
    """Read Yearbook / Portraits: `<root>/{M,F}/<year>_<school>_..._<n>.png`.

    Args:
        root: the folder holding M/ and F/, or its parent holding YEARBOOK_FOLDER.
        task: "gender": label F/M, domains = year bins `domain_width` wide, named by first
            year ("1930"). "grasp": domains = YEARBOOK_PERIODS, label earlier/later half of
            the period's decades (before_1950s: <1930 vs >=1930; then 1950s vs 1960s,
            1970s vs 1980s, 1990s vs 2000s+).
        domain_width: years per domain for task "gender" (1 = one domain per year).
        size: resize to size x size (bilinear); channels: 3 (RGB) or 1 (grayscale).
    Returns:
        {domain: ArrayDataset} in time order; meta["gender"] (N,) int64 (0 = F, 1 = M) and
        meta["year"] (N,) int64 per image, so splits can stratify by gender.
    """
    if task not in ("gender", "grasp"):
        raise ConfigError(f"Yearbook task must be 'gender' or 'grasp', got {task!r}")
    if domain_width < 1:
        raise ConfigError(f"domain_width must be >= 1 year, got {domain_width}")
    root = Path(root)
    folder = root / YEARBOOK_FOLDER if (root / YEARBOOK_FOLDER).is_dir() else root
    groups: dict[tuple[int, str], list[tuple]] = {}  # (order, domain) -> [(path, label, gender, year)]
    order = {name: i for i, (name, _, _) in enumerate(YEARBOOK_PERIODS)}
    for gender, g in enumerate(_GENDERS):
        for path in list_images(folder / g):
            year = _year(path)
            if task == "gender":
                start = year // domain_width * domain_width
                key, label = (start, str(start)), gender
            else:
                name, label = _period(year)
                key = (order[name], name)
            groups.setdefault(key, []).append((path, label, gender, year))
    classes = list(_GENDERS) if task == "gender" else ["earlier", "later"]
    storage = choose_storage(storage, [r[0] for rows in groups.values() for r in rows], size=size, channels=channels)
    out = {}
    for (_, name), rows in sorted(groups.items()):
        rows.sort(key=lambda r: (r[3], natural_key(r[0].name)))
        images = load_images([r[0] for r in rows], size=size, channels=channels, storage=storage, cache_dir=cache_dir)
        meta = {"domain": name, "gender": _column(rows, 2), "year": _column(rows, 3),
                "gender_classes": list(_GENDERS)}
        out[name] = ArrayDataset(images, _column(rows, 1), classes, meta)
    return out
