"""Interop: torchvision / timm state dicts and `.pt` files in as sources; plain safetensors out; inspection.

In: `as_source(path, model, out_dir)` turns a foreign checkpoint (a `.pt`/`.pth`/`.bin` read with
`torch.load(weights_only=True)`, or a safetensors file without shiftkit metadata, e.g. a timm hub file)
into a validated shiftkit source checkpoint. Wrapper prefixes (`module.` from DataParallel, `_orig_mod.`
from torch.compile, `model.`) are stripped when that makes the names match the model.
Out: `export_checkpoint` writes the bare state dict (masks folded in: no weight_orig / weight_mask)
with the key names of the plain timm / torch model, loadable by `safetensors.torch.load_file` alone.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import Tensor, nn

from .checkpoints import (LazyCheckpoint, atomic_write, import_pt, model_metadata, read_metadata, save_checkpoint,
                          validate_state, validate_tensors)
from ._files import loads_bounded
from .errors import CheckpointError

__all__ = ["read_state", "match_keys", "import_state", "as_source", "import_checkpoint", "fold_masks",
           "export_state", "export_checkpoint", "inspect_checkpoint"]

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.")
PT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of a safetensors file or a `.pt`-style state dict (weights_only: no code runs)."""
    path = Path(path)
    if path.suffix in PT_SUFFIXES:
        return import_pt(path)
    with LazyCheckpoint(path) as ckpt:  # checks the file and every declared shape before reading
        return {k: ckpt.get(k) for k in ckpt.keys()}


def match_keys(state: dict[str, Tensor], expected: list[str]) -> dict[str, Tensor]:
    """Strip wrapper prefixes (module., _orig_mod., model., backbone.) while that makes more names match."""
    want = set(expected)
    while True:
        hits = sum(k in want for k in state)
        for prefix in WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                stripped = {k[len(prefix):]: v for k, v in state.items()}
                if sum(k in want for k in stripped) > hits:
                    state = stripped
                    break
        else:
            return state


def import_state(state: dict[str, Tensor], model: nn.Module, *, where: str = "<state dict>",
                 skip_mismatched: bool = False) -> list[str]:
    """Load a foreign state dict into `model` after validating names, shapes and finiteness.

    Floating tensors are cast to the model's dtype (hub files are often fp16). With skip_mismatched,
    tensors whose shape differs (a 1000-class head into a 10-class model) keep the model's value.
    Returns the names skipped. The model is untouched unless every check passes.
    """
    expected = model.state_dict()
    state = match_keys(state, list(expected))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in expected}
    for k in expected:  # BN counters are bookkeeping: absent in some exports
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = expected[k].clone()
    validate_state(where, list(state), expected)
    skipped = [k for k, ref in expected.items() if skip_mismatched and tuple(state[k].shape) != tuple(ref.shape)]
    kept = {k: ref for k, ref in expected.items() if k not in skipped}
    cast = {k: state[k].to(ref.dtype) if state[k].is_floating_point() and ref.is_floating_point() else state[k]
            for k, ref in kept.items()}
    new, _ = validate_tensors(where, cast, kept)
    with torch.no_grad():
        for k, t in new.items():
            expected[k].copy_(t)
    return skipped


def as_source(path: str | os.PathLike, template: nn.Module, out_dir: str | os.PathLike) -> Path:
    """A shiftkit source checkpoint for `path`: itself when it already is one, else an imported copy."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file() and "arch" in read_metadata(path):
        return path
    out = Path(out_dir) / f"{path.stem}.safetensors"
    model = copy.deepcopy(template)
    import_state(read_state(path), model, where=str(path))
    save_checkpoint(out, model, metadata={"imported_from": str(path)})
    return out


def import_checkpoint(src: str | os.PathLike, out: str | os.PathLike, *, arch: str, num_classes: int = 10,
                      in_chans: int = 3, skip_mismatched: bool = False, **model_kwargs) -> dict:
    """Convert a torchvision / timm / `.pt` state dict into a shiftkit checkpoint of a registered arch."""
    from . import models

    model = models.create(arch, num_classes=num_classes, in_chans=in_chans, **model_kwargs)
    skipped = import_state(read_state(src), model, where=str(src), skip_mismatched=skip_mismatched)
    save_checkpoint(out, model, metadata={"imported_from": str(src), "skipped": json.dumps(skipped)})
    return {"checkpoint": str(out), "arch": arch, "tensors": len(model.state_dict()), "skipped": skipped}


def fold_masks(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torch.nn.utils.prune state (x.weight_orig, x.weight_mask) -> x.weight = orig * mask; others unchanged."""
    out = {}
    for k, v in state.items():
        if k.endswith("_mask") and k[:-5] + "_orig" in state:
            continue
        if k.endswith("_orig") and k[:-5] + "_mask" in state:
            out[k[:-5]] = v * state[k[:-5] + "_mask"].to(v.dtype)
        else:
            out[k] = v
    return out


def export_state(model_or_state: nn.Module | dict[str, Tensor]) -> dict[str, Tensor]:
    """The plain state dict a timm / torch user loads: masks folded in, contiguous CPU copies."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k: v.detach().cpu().contiguous().clone() for k, v in fold_masks(dict(state)).items()}


def export_checkpoint(src: str | os.PathLike | nn.Module, out: str | os.PathLike) -> dict:
    """Write `src` (a shiftkit checkpoint or a model) as a plain safetensors state dict.

    Metadata keeps what a user needs to rebuild the model (arch, num_classes, in_chans, config) under
    the standard `format: pt` key; nothing in the file needs shiftkit to load.
    """
    if isinstance(src, nn.Module):
        state, meta = export_state(src), model_metadata(src)
    else:
        state, meta = export_state(read_state(src)), _metadata_or_empty(src)
    keep = {k: meta[k] for k in ("arch", "num_classes", "config", "domain", "method", "sparsity") if meta.get(k)}
    cfg = loads_bounded(keep.get("config", "{}") or "{}", f"{src}: 'config' metadata", CheckpointError)
    cfg = cfg if isinstance(cfg, dict) else {}
    keep.update(format="pt", in_chans=str(cfg.get("in_chans", "")), exported_by="shiftkit")
    atomic_write(out, st_save(state, metadata={k: str(v) for k, v in keep.items()}))
    return {"out": str(out), "tensors": len(state), "arch": keep.get("arch", "")}


def _metadata_or_empty(path) -> dict[str, str]:
    return read_metadata(path) if Path(path).suffix == ".safetensors" else {}


def inspect_checkpoint(path: str | os.PathLike) -> dict:
    """Arch, metadata, one row per tensor (shape, dtype, params, sparsity) and totals; reads lazily."""
    path = Path(path)
    rows = []
    if path.suffix == ".safetensors":
        with LazyCheckpoint(path) as ckpt:
            meta = dict(ckpt.metadata)
            for name in ckpt.keys():
                rows.append(_row(name, ckpt.get(name)))
    else:
        meta = {}
        rows = [_row(k, v) for k, v in read_state(path).items()]
    weights = [r for r in rows if r["is_weight"]]
    params = sum(r["params"] for r in rows)
    w_total = sum(r["params"] for r in weights)
    w_zeros = sum(r["zeros"] for r in weights)
    parsed = {k: _maybe_json(v) for k, v in meta.items()}
    return {"path": str(path), "arch": meta.get("arch", "unknown"), "metadata": parsed, "tensors": rows,
            "params": params, "bytes": sum(r["bytes"] for r in rows),
            "weight_sparsity": w_zeros / max(w_total, 1), "weight_params": w_total}


def _row(name: str, t: Tensor) -> dict:
    zeros = int((t == 0).sum()) if t.numel() else 0
    return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "params": t.numel(),
            "zeros": zeros, "sparsity": zeros / max(t.numel(), 1), "bytes": t.numel() * t.element_size(),
            "is_weight": t.ndim >= 2 and t.is_floating_point()}


def _maybe_json(v: str):
    """A metadata value as JSON when it is bounded, well-formed JSON; else the text itself."""
    try:
        return loads_bounded(v, "metadata", CheckpointError)
    except CheckpointError:  # unbounded, deeply nested or not JSON: keep the text
        return v
