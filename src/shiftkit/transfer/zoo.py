"""Source zoo: pretrain one shared base on one domain (or take it from a pretrained file), then fine-tune
one source per domain from it.

Merging (task arithmetic, TIES, OPCM, GRASP's tensor copies) only makes sense between models that
share a base. Files: `<out>/base.safetensors`, `<out>/source_<domain>.safetensors` (metadata: arch,
num_classes, domain, dataset) and `<out>/zoo.json`, the manifest in domain (temporal) order.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import models
from ..checkpoints import atomic_write_json, load_checkpoint, save_checkpoint
from ..data.domains import Domain
from ..device import place
from .._files import read_json
from ..errors import CheckpointError, ConfigError
from ..train import TrainConfig, evaluate, fit

__all__ = ["ZooConfig", "build_zoo", "read_manifest", "zoo_sources", "zoo_checksum", "init_from_file"]


@dataclass(frozen=True)
class ZooConfig:
    model: str = "small_cnn"
    model_kwargs: dict = field(default_factory=dict)
    base_domain: int = 0      # the prototype's base: the clean bin 0
    base_epochs: int = 5      # enough for small_cnn to reach its plateau on one 7k-image bin
    source_epochs: int = 3    # short fine-tuning keeps every source near the shared base
    base_lr: float = 1e-3
    source_lr: float = 5e-4   # lower than the base's: sources stay in the base's basin (merge-compatible)
    batch_size: int = 128
    seed: int = 0
    augment: str = "none"     # training batches of the base and the sources (shiftkit.data.loader.AUGMENTS)
    base_file: Optional[str] = None  # a pretrained base (shiftkit / timm / torchvision file): no base training


def init_from_file(path: str | os.PathLike, model: nn.Module) -> list[str]:
    """Load pretrained weights into `model` (a shiftkit checkpoint, or a timm / torchvision state dict through
    `shiftkit.interop`); tensors whose shape differs (a 1000-class head) keep the model's own init.
    Returns the names kept. Never downloads: a missing file is a CheckpointError naming it."""
    from ..interop import import_state, read_state

    path = check_pretrained_file(path)
    return import_state(read_state(path), model, where=str(path), skip_mismatched=True)


def check_pretrained_file(path: str | os.PathLike) -> Path:
    """`path` if it is a file (checked before any data loads); else the one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained file {path} does not exist (weights are never downloaded: "
                              "give a local shiftkit checkpoint, timm or torchvision state dict)")
    return path


def build_zoo(domains: list[Domain], out: str | Path, *, cfg: ZooConfig = ZooConfig(), dataset: str = "",
              exclude: tuple[int, ...] = (), device: str | torch.device | None = None, precision: str = "fp32") -> dict:
    """Train the base and one source per domain not in `exclude` (the target); skips files already there.
    `device` / `precision`: where and how the zoo trains (not part of its identity: files are written from CPU)."""
    if cfg.base_file is None and (not 0 <= cfg.base_domain < len(domains) or cfg.base_domain in exclude):
        raise ConfigError(f"base_domain={cfg.base_domain} must be a domain index other than the target {exclude}")
    out = Path(out)
    d0 = domains[cfg.base_domain if cfg.base_file is None else 0]  # classes and channels agree across domains
    make = lambda: place(models.create(cfg.model, num_classes=len(d0.classes), in_chans=d0.train.shape[0],  # noqa: E731
                                       **cfg.model_kwargs), device)
    base_path = out / "base.safetensors"
    if not base_path.is_file():
        torch.manual_seed(cfg.seed)  # the base's random init (or new head): the zoo is a function of its seed
        net = make()
        if cfg.base_file is not None:  # pretrained elsewhere: no base domain, no base training
            skipped = init_from_file(cfg.base_file, net)
            meta = {"pretrained_from": cfg.base_file, "reinitialised": json.dumps(skipped)}
        else:
            fit(net, d0.train, d0.val, TrainConfig(epochs=cfg.base_epochs, lr=cfg.base_lr, batch_size=cfg.batch_size,
                                                   seed=cfg.seed, precision=precision, augment=cfg.augment))
            meta = {"domain": d0.name}
        save_checkpoint(base_path, net, metadata={**meta, "dataset": dataset, "role": "base"})
    entries = []
    for i, d in enumerate(domains):
        if i in exclude:
            continue
        path = out / f"source_{d.name}.safetensors"
        if not path.is_file():
            net = make()
            load_checkpoint(base_path, net)
            fit(net, d.train, d.val, TrainConfig(epochs=cfg.source_epochs, lr=cfg.source_lr, batch_size=cfg.batch_size,
                                                 seed=cfg.seed * 1000 + i, precision=precision, augment=cfg.augment))
            save_checkpoint(path, net, metadata={"domain": d.name, "dataset": dataset, "role": "source"})
        entries.append({"index": i, "domain": d.name, "path": path.name})
    manifest = {"dataset": dataset, "base": base_path.name, "sources": entries, "config": asdict(cfg)}
    atomic_write_json(out / "zoo.json", manifest)
    return manifest


def read_manifest(zoo: str | Path) -> dict:
    """A zoo's zoo.json through the bounded reader, every field type-checked: base and source paths are
    plain file names inside the zoo, indices integers, config an object. ConfigError naming the file."""
    path = Path(zoo) / "zoo.json"
    if not path.exists():
        raise ConfigError(f"{zoo}: no zoo.json (build one with `shiftkit sources`)")
    m = read_json(path, ConfigError, "zoo manifest", max_bytes=16 << 20)

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{path}: not a readable zoo manifest ({what})")

    def name(v) -> bool:
        return isinstance(v, str) and v not in ("", ".", "..") and "/" not in v and "\0" not in v

    if not isinstance(m, dict) or not isinstance(m.get("sources"), list) or not name(m.get("base")):
        raise bad("expected an object with a base file name and a sources list")
    for e in m["sources"]:
        if not (isinstance(e, dict) and type(e.get("index")) is int and isinstance(e.get("domain"), str)
                and name(e.get("path"))):
            raise bad(f"source entry {str(e)[:80]} needs index (integer), domain (text), path (a file name)")
    if not isinstance(m.setdefault("config", {}), dict):
        raise bad("config is not an object")
    return m


def zoo_sources(zoo: str | Path, *, exclude: tuple[str | int, ...] = ()) -> tuple[Path, list[Path]]:
    """(base path, source paths in domain order) from a zoo folder, without the excluded domains."""
    zoo = Path(zoo)
    manifest = read_manifest(zoo)
    keep = [e for e in manifest["sources"] if e["index"] not in exclude and e["domain"] not in exclude]
    return zoo / manifest["base"], [zoo / e["path"] for e in keep]


def zoo_checksum(zoo: str | Path) -> str:
    """sha256 over the base and every source checkpoint, in manifest order (what a zoo's numbers depend on)."""
    zoo = Path(zoo)
    manifest = read_manifest(zoo)
    h = hashlib.sha256()
    for name in [manifest["base"]] + [e["path"] for e in manifest["sources"]]:
        h.update(name.encode())
        with open(zoo / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def quick_report(domains: list[Domain], zoo: str | Path) -> list[dict]:
    """Test accuracy of every zoo model on its own domain (a sanity table for the CLI)."""
    zoo = Path(zoo)
    manifest = read_manifest(zoo)
    rows = []
    for e in manifest["sources"]:
        cfg = manifest["config"]
        net = models.create(cfg["model"], num_classes=len(domains[0].classes), in_chans=domains[0].train.shape[0],
                            **cfg["model_kwargs"])
        load_checkpoint(zoo / e["path"], net)
        rows.append({"source": e["domain"], "own_test_accuracy": evaluate(net, domains[e["index"]].test)["accuracy"]})
    return rows
