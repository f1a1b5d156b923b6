"""safetensors checkpoints: metadata, atomic writes, validation against the model, lazy reads.

Writes go to a temp file in the same folder, are fsync'ed, then renamed over the target,
so a crash leaves either the old file or the new one, never a half-written one.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor, nn

from .errors import CheckpointError

__all__ = ["atomic_write", "atomic_write_json", "save_checkpoint", "read_metadata", "LazyCheckpoint",
           "load_checkpoint", "validate_state", "check_arch", "import_pt", "model_metadata",
           "model_from_checkpoint"]


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes so readers see the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def model_metadata(model: nn.Module, **extra) -> dict[str, str]:
    """arch / num_classes / config of a model built by shiftkit.models.create, plus extras, as strings."""
    from . import __version__

    cfg = getattr(model, "shiftkit_config", {})
    meta = {"arch": getattr(model, "shiftkit_arch", type(model).__name__), "shiftkit_version": __version__,
            "num_classes": str(cfg.get("num_classes", "")), "config": json.dumps(cfg, sort_keys=True)}
    meta.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in extra.items()})
    return meta


def save_checkpoint(path: str | os.PathLike, model_or_state: nn.Module | dict[str, Tensor], *,
                    metadata: dict[str, str] | None = None) -> None:
    """Save a model (or a state dict) as safetensors, atomically, with metadata."""
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict()
        metadata = {**model_metadata(model_or_state), **(metadata or {})}
    else:
        state = model_or_state
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, _sorted_metadata(st_save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})))


def _sorted_metadata(blob: bytes) -> bytes:
    """safetensors writes its metadata map in hash order (differs between processes): sort it, so the
    same tensors and metadata always give the same bytes. Header = u64 length + JSON padded to 8 bytes."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


class LazyCheckpoint:
    """Reads one tensor at a time (`safe_open`), so merges never hold a whole source."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: checkpoint not found")
        try:
            self._f = safe_open(str(self.path), framework="pt")
            self.metadata: dict[str, str] = self._f.metadata() or {}
            self._keys = list(self._f.keys())
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{self.path}: not a valid safetensors file ({e})") from e

    def keys(self) -> list[str]:
        return list(self._keys)

    def get(self, name: str) -> Tensor:
        if name not in self._keys:
            raise CheckpointError(f"{self.path}: tensor {name!r} missing")
        try:
            return self._f.get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{self.path}: tensor {name!r} unreadable ({e})") from e

    def shape(self, name: str) -> list[int]:
        if name not in self._keys:
            raise CheckpointError(f"{self.path}: tensor {name!r} missing")
        return list(self._f.get_slice(name).get_shape())

    def close(self) -> None:
        self._f = None

    def __enter__(self) -> "LazyCheckpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    with LazyCheckpoint(path) as ckpt:
        return dict(ckpt.metadata)


def _check_tensor(where: str, name: str, t: Tensor, ref: Tensor, nonfinite: str) -> bool:
    """True if t may replace ref; raises CheckpointError naming the tensor otherwise."""
    if tuple(t.shape) != tuple(ref.shape):
        raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(t.shape)}, model expects {tuple(ref.shape)}")
    if t.dtype != ref.dtype:
        raise CheckpointError(f"{where}: tensor {name!r} has dtype {t.dtype}, model expects {ref.dtype}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        if nonfinite == "skip":
            warnings.warn(f"{where}: tensor {name!r} holds NaN/Inf; skipped (model keeps its own value)")
            return False
        raise CheckpointError(f"{where}: tensor {name!r} holds NaN/Inf")
    return True


def validate_state(where: str, keys: list[str], expected: dict[str, Tensor]) -> None:
    """Missing or unexpected tensor names -> CheckpointError naming them."""
    missing = [k for k in expected if k not in keys]
    extra = [k for k in keys if k not in expected]
    if missing:
        raise CheckpointError(f"{where}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor(s) {extra[:5]}{' ...' if len(extra) > 5 else ''}")


def check_arch(where: str, metadata: dict[str, str], model: nn.Module) -> None:
    arch = getattr(model, "shiftkit_arch", None)
    if arch and metadata.get("arch") and metadata["arch"] != arch:
        raise CheckpointError(f"{where}: checkpoint arch {metadata['arch']!r} does not match model arch {arch!r}")


def load_checkpoint(path: str | os.PathLike, model: nn.Module, *, nonfinite: str = "error") -> dict[str, str]:
    """Load a safetensors checkpoint into `model` after validating every tensor.

    The model is untouched unless every check passes. Returns the checkpoint metadata.
    Args:
        nonfinite: "error" rejects NaN/Inf tensors; "skip" warns and keeps the model's value.
    """
    expected = model.state_dict()
    with LazyCheckpoint(path) as ckpt:
        check_arch(str(path), ckpt.metadata, model)
        validate_state(str(path), ckpt.keys(), expected)
        new = {k: t for k in expected if _check_tensor(str(path), k, t := ckpt.get(k), expected[k], nonfinite)}
        metadata = dict(ckpt.metadata)
    with torch.no_grad():
        for k, t in new.items():
            expected[k].copy_(t)
    return metadata


def model_from_checkpoint(path: str | os.PathLike, *, default_arch: str | None = None) -> nn.Module:
    """A fresh model of the arch and config in a shiftkit checkpoint's metadata (weights not loaded).

    Missing or unreadable metadata (a foreign file, a hand-edited config) -> CheckpointError naming the file.
    """
    from . import models

    meta = read_metadata(path)
    arch = meta.get("arch") or default_arch
    try:
        cfg = json.loads(meta.get("config") or "{}")
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise CheckpointError(f"{path}: unreadable 'config' metadata ({e})") from None
    if not arch:
        raise CheckpointError(f"{path}: no shiftkit metadata (arch); import it first: shiftkit import {path} --arch NAME")
    try:
        return models.create(arch, **cfg)
    except TypeError as e:
        raise CheckpointError(f"{path}: config metadata {cfg} does not fit model {arch!r} ({e})") from None


def import_pt(path: str | os.PathLike) -> dict[str, Tensor]:
    """A `.pt`/`.pth` state dict, loaded with weights_only=True: a pickle cannot run code."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols > 2: noise beside the outcome
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... on hostile or corrupt files
        # torch's message suggests retrying with weights_only=False; show only what was refused
        found = re.search(r"(?:Unsupported global: |unsupported )GLOBAL [\w.]+|Unsupported operand \d+", str(e))
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]  # EOFError: no text
        reason = found.group(0) if found else lines[0][:200]
        raise CheckpointError(f"{path}: refused to load ({type(e).__name__}: {reason})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return obj
