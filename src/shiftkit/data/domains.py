"""Domains (a year, a period, a drift bin) with train/val/test splits, and leave-one-out targets."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError, DataError
from .base import ArrayDataset

__all__ = ["Domain", "split_domain", "leave_one_out", "few_shot", "domain_index"]


@dataclass
class Domain:
    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def split_domain(name: str, ds: ArrayDataset, *, fractions=(0.8, 0.1, 0.1), seed: int = 42,
                 stratify: torch.Tensor | None = None) -> Domain:
    """Random train/val/test split of one domain (reference: 80/10/10, seed 42).

    Args:
        stratify: optional per-image group ids (e.g. Yearbook gender); each group is split
            with the same fractions, so every split keeps the group proportions.
    """
    if len(ds) < 3:
        raise DataError(f"domain {name!r} has {len(ds)} images; need at least 3 to split")
    g = torch.Generator().manual_seed(seed)
    groups = [torch.arange(len(ds))] if stratify is None else [
        (stratify == v).nonzero().squeeze(1) for v in stratify.unique()]
    parts: list[list[torch.Tensor]] = [[], [], []]
    for members in groups:
        perm = members[torch.randperm(len(members), generator=g)]
        n_train = int(round(fractions[0] * len(perm)))
        n_val = int(round(fractions[1] * len(perm)))
        for i, chunk in enumerate((perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:])):
            parts[i].append(chunk)
    return Domain(name, *(ds.subset(torch.cat(p)) for p in parts))


def domain_index(domains: list[Domain], index: int, key: str) -> int:
    """The one normalisation of a domain index (CLI flags and config keys alike): -1 is the last
    domain, and the result is always in 0..len-1, so a negative target can never be mistaken for
    another domain (e.g. left in a source zoo). Out of range -> ConfigError naming `key`."""
    n = len(domains)
    if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
        names = f"{domains[0].name} ... {domains[-1].name}" if n else "none"
        raise ConfigError(f"{key}={index}: the dataset has {n} domains ({names}); {index} is out of range, "
                          f"use 0..{n - 1} or -1 for the last")
    return index % n


def leave_one_out(domains: list[Domain], target: int | str) -> tuple[Domain, list[Domain]]:
    """Target = one domain; sources = all the others in their (temporal) order."""
    names = [d.name for d in domains]
    if not isinstance(target, int):
        if target not in names:
            raise ConfigError(f"target {target!r} is not a domain; valid: {names} or 0..{len(domains) - 1}")
        target = names.index(target)
    idx = domain_index(domains, target, "target")
    return domains[idx], [d for i, d in enumerate(domains) if i != idx]


def _stratified(labels: torch.Tensor, n: int, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """n indices, as class-balanced as the data allows, in random order."""
    perm = torch.randperm(len(labels), generator=g)
    rank = torch.zeros(len(labels), dtype=torch.long)
    seen = torch.zeros(num_classes, dtype=torch.long)
    for i in perm.tolist():  # rank of each item inside its class, along the permutation
        c = int(labels[i])
        rank[i] = seen[c]
        seen[c] += 1
    order = perm[torch.argsort(rank[perm] * num_classes + labels[perm], stable=True)]
    return order[:n]


def few_shot(domain: Domain, n_train: int, *, val_fraction: float = 0.2, seed: int = 0) -> Domain:
    """Cap a target's training set at n_train labelled images (class-stratified).

    Few labels everywhere: the validation set is about `val_fraction` × n_train, drawn
    from the same labelled pool; everything else in the domain becomes the test pool,
    so the test set has thousands of images and a point of accuracy is not noise.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:  # -5 would be a slice end
        raise ConfigError(f"few-shot n_train={n_train!r} must be an integer >= 1 (data.few_shot / --few-shot)")
    n_val = max(1, int(round(val_fraction * n_train)))
    pool = ArrayDataset(
        torch.cat([domain.train.images, domain.val.images, domain.test.images]),
        torch.cat([domain.train.labels, domain.val.labels, domain.test.labels]),
        domain.classes,
    )
    if n_train + n_val >= len(pool):
        raise ConfigError(f"few-shot n_train={n_train} (+{n_val} val) leaves no test pool in domain {domain.name!r} ({len(pool)} images)")
    g = torch.Generator().manual_seed(seed)
    labelled = _stratified(pool.labels, n_train + n_val, pool.num_classes, g)
    train_idx, val_idx = labelled[:n_train], labelled[n_train:]
    rest = torch.ones(len(pool), dtype=torch.bool)
    rest[labelled] = False
    return Domain(domain.name, pool.subset(train_idx), pool.subset(val_idx), pool.subset(rest.nonzero().squeeze(1)))
