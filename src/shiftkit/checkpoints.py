"""safetensors checkpoints: metadata, atomic writes, validation against the model, lazy reads.

Writes go to a temp file in the same folder, are fsync'ed, then renamed over the target,
so a crash leaves either the old file or the new one, never a half-written one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from contextvars import ContextVar
from typing import Iterable, Iterator, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor, nn

from ._files import OutputError, check_output, claim_output, loads_bounded, regular_file, umask_mode
from .errors import CheckpointError, ConfigError, DivergedError

__all__ = ["atomic_write", "atomic_write_many", "staged_writes", "atomic_write_json", "json_bytes", "save_checkpoint",
           "read_metadata", "LazyCheckpoint",
           "load_checkpoint", "validate_state", "validate_tensors", "check_arch", "import_pt", "model_metadata",
           "model_from_checkpoint", "model_spec", "checkpoint_config", "check_shape"]


def atomic_write(path: str | os.PathLike, data: bytes, *, claim: bool = True) -> None:
    """Write bytes so readers see the old file or the complete new one, never a partial one.

    With `claim` (the default) this process first takes the output's advisory lock (`claim_output`),
    so a second process writing the same path gets OutputLockedError instead of silently replacing it.
    Files shared on purpose (benchmark tables updated under their own lock) pass claim=False.
    The file gets the permissions of a plain open() under the user's umask, not the temp file's 0600.
    """
    atomic_write_many({path: data}, claim=claim)


# output path -> its written, fsync'ed temp file (None until written), inside a `staged_writes` block
_STAGED: ContextVar[dict[Path, str | None] | None] = ContextVar("shiftkit_staged_writes", default=None)


@contextlib.contextmanager
def staged_writes(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Inside the block, atomic writes to `paths` are written and fsync'ed but not renamed: the next
    `atomic_write_many(..., commit_staged=True)` renames them together with its own files. Leaving the
    block without that commit (an error, a full disk, Ctrl-C) removes them and the earlier files stay:
    a run's model file and the result.json describing it change together."""
    staged: dict[Path, str | None] = {Path(os.path.abspath(p)): None for p in paths}
    token = _STAGED.set(staged)
    try:
        yield
    finally:
        _STAGED.reset(token)
        for tmp in staged.values():
            if tmp:
                Path(tmp).unlink(missing_ok=True)


def atomic_write_many(files: Mapping[str | os.PathLike, bytes], *, claim: bool = True,
                      commit_staged: bool = False) -> None:
    """Write several files as one commit: every temp file is written and fsync'ed before the first rename,
    so a full disk or an error while writing leaves all of them as they were (a run's result.json and
    the experiment.json describing it never disagree). A full disk or unwritable place is an OutputError
    naming the file; an existing device, FIFO, socket or folder is never renamed over. A path staged by
    `staged_writes` is only written; `commit_staged` renames the staged files with these."""
    paths = {Path(p): data for p, data in files.items()}
    staged = _STAGED.get()
    for path in paths:
        if claim:
            claim_output(path)
        else:
            check_output(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{path}: cannot make the folder {path.parent} ({e.strerror})") from None
    temps: dict[Path, str] = {}
    try:
        for path, data in paths.items():
            key = Path(os.path.abspath(path))
            if staged is not None and key in staged and not commit_staged:
                old, staged[key] = staged[key], _write_temp(path, data)  # renamed by the commit
                if old:
                    Path(old).unlink(missing_ok=True)
                continue
            temps[path] = _write_temp(path, data)
        if commit_staged and staged:
            temps.update({p: t for p, t in staged.items() if t})
            staged.update(dict.fromkeys(staged))  # handed over: renamed below, or removed on failure
        for path, tmp in temps.items():
            check_output(path)  # what is there now: the rename must never replace a device or a folder
            os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e}); the earlier file is kept") from None
    finally:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)  # the ones not renamed (an error, an interrupt)
    for folder in {p.parent for p in temps}:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the renames themselves durable
        finally:
            os.close(dir_fd)


def _write_temp(path: Path, data: bytes) -> str:
    """`data` in a fresh temp file beside `path`, fsync'ed (mkstemp: O_EXCL | O_NOFOLLOW, never an existing
    file or a symlink's target); removed again when writing fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), umask_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_json(path: str | os.PathLike, obj, *, claim: bool = True) -> None:
    atomic_write(path, json_bytes(obj), claim=claim)


def json_bytes(obj) -> bytes:
    """The bytes atomic_write_json writes (sorted keys, indent 2): for atomic_write_many."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def model_metadata(model: nn.Module, **extra) -> dict[str, str]:
    """arch / num_classes / config of a model built by shiftkit.models.create, plus extras, as strings."""
    from . import __version__

    cfg = getattr(model, "shiftkit_config", {})
    meta = {"arch": getattr(model, "shiftkit_arch", type(model).__name__), "shiftkit_version": __version__,
            "num_classes": str(cfg.get("num_classes", "")), "config": json.dumps(cfg, sort_keys=True)}
    meta.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in extra.items()})
    return meta


def save_checkpoint(path: str | os.PathLike, model_or_state: nn.Module | dict[str, Tensor], *,
                    metadata: dict[str, str] | None = None, allow_nonfinite: bool = False) -> None:
    """Save a model (or a state dict) as safetensors, atomically, with metadata.

    A NaN/Inf tensor (a diverged training, an overflowing merge) raises DivergedError and nothing is
    written: a result is never silently a broken model. allow_nonfinite=True is for test fixtures."""
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict()
        metadata = {**model_metadata(model_or_state), **(metadata or {})}
    else:
        state = model_or_state
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    bad = None if allow_nonfinite else next((k for k, v in tensors.items()
                                             if v.is_floating_point() and not bool(v.isfinite().all())), None)
    if bad is not None:
        raise DivergedError(f"{path}: not written: tensor {bad!r} holds NaN/Inf (the run diverged or the merge "
                            "overflowed; lower the learning rate or the merge scale)")
    atomic_write(path, _sorted_metadata(st_save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})))


def _sorted_metadata(blob: bytes) -> bytes:
    """The same file with its header's __metadata__ in sorted key order: safetensors writes it from a
    Rust HashMap, whose order changes from process to process, so the same model would give different
    bytes. Tensor entries and data offsets are kept as they are; the header is re-padded to 8 bytes."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n:]


class LazyCheckpoint:
    """Reads one tensor at a time (`safe_open`), so merges never hold a whole source. `device`: where `get`
    puts each tensor (safetensors copies it there directly; a merge on a GPU streams sources to it)."""

    def __init__(self, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> None:
        self.path = regular_file(path, CheckpointError, "checkpoint")
        try:
            self._f = safe_open(str(self.path), framework="pt", device=str(device))
            self.metadata: dict[str, str] = self._f.metadata() or {}
            self._keys = list(self._f.keys())
            shapes = {k: list(self._f.get_slice(k).get_shape()) for k in self._keys}
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{self.path}: not a valid safetensors file ({e})") from e
        for name, shape in shapes.items():  # from the header, before any tensor is materialised
            check_shape(str(self.path), name, shape)
        self._shapes = shapes

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
        return list(self._shapes[name])

    def close(self) -> None:
        self._f = None

    def __enter__(self) -> "LazyCheckpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


MAX_DIM = 1 << 40  # no real tensor has a dimension of a trillion; 2^63 overflows torch's size arithmetic


def check_shape(where: str, name: str, shape: list[int] | tuple[int, ...]) -> None:
    """A tensor shape torch can represent: every dimension (zero-size tensors included) and the product of
    the non-zero ones at most MAX_DIM. CheckpointError naming the tensor otherwise."""
    span = 1
    for d in shape:
        span *= max(int(d), 1)
    if any(int(d) < 0 or int(d) > MAX_DIM for d in shape) or span > MAX_DIM:
        raise CheckpointError(f"{where}: tensor {name!r} declares shape {list(shape)}, beyond what a tensor can hold")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    with LazyCheckpoint(path) as ckpt:
        return dict(ckpt.metadata)


def _check_tensor(where: str, name: str, t: Tensor, ref: Tensor, nonfinite: str) -> bool:
    """True if t may replace ref, False if it is non-finite and nonfinite="skip"; CheckpointError naming
    the tensor otherwise."""
    if tuple(t.shape) != tuple(ref.shape):
        raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(t.shape)}, model expects {tuple(ref.shape)}")
    if t.dtype != ref.dtype:
        raise CheckpointError(f"{where}: tensor {name!r} has dtype {t.dtype}, model expects {ref.dtype}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        if nonfinite == "skip":
            return False
        raise CheckpointError(f"{where}: tensor {name!r} holds NaN/Inf")
    return True


def validate_tensors(where: str, tensors: LazyCheckpoint | Mapping[str, Tensor], expected: Mapping[str, Tensor], *,
                     nonfinite: str = "error", keep: bool = True) -> tuple[dict[str, Tensor], list[str]]:
    """Check tensors against the ones a model expects: the same names, then per tensor shape, dtype, finiteness.

    Reads a LazyCheckpoint one tensor at a time; `expected` may live on the meta device (only shapes and
    dtypes are compared). The first problem raises CheckpointError naming `where` and the tensor.
    Args:
        nonfinite: "error" rejects a NaN/Inf tensor; "skip" leaves it out and lists its name.
        keep: return the valid tensors (False: check and drop each, memory stays at one tensor).
    Returns:
        (the valid tensors by name, or {} without keep; the names of the non-finite tensors skipped).
    """
    if nonfinite not in ("error", "skip"):
        raise ConfigError(f"nonfinite={nonfinite!r}; valid: error, skip")
    validate_state(where, list(tensors.keys()), expected)
    valid, skipped = {}, []
    for name, ref in expected.items():
        t = tensors.get(name)
        if not _check_tensor(where, name, t, ref, nonfinite):
            skipped.append(name)
        elif keep:
            valid[name] = t
    return valid, skipped


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
        new, skipped = validate_tensors(str(path), ckpt, expected, nonfinite=nonfinite)
        metadata = dict(ckpt.metadata)
    for name in skipped:
        warnings.warn(f"{path}: tensor {name!r} holds NaN/Inf; skipped (model keeps its own value)")
    with torch.no_grad():
        for k, t in new.items():
            expected[k].copy_(t)
    return metadata


MAX_CLASSES = 1_000_000  # ImageNet-21k has 21,841; a million is a typo or an attack, never a model
MAX_CHANS = 1024
MAX_OPTION = 1_000_000  # widths, depths, multipliers: far above any model that fits in memory


def _positive_int(where: str, key: str, value, limit: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise CheckpointError(f"{where}: metadata {key}={value!r} must be an integer in [1, {limit}]")
    return value


def checkpoint_config(where: str, meta: dict[str, str]) -> dict:
    """The model config in a checkpoint's metadata, validated: the one check of untrusted configs.
    Bounded JSON of scalars; class and channel counts integers in range; other numbers finite and in
    [0, MAX_OPTION]; a top-level num_classes must agree with the config's (and fills it in)."""
    cfg = loads_bounded(meta.get("config") or "{}", f"{where}: 'config' metadata", CheckpointError)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}: 'config' metadata is a JSON {type(cfg).__name__}, not an object")
    for key, value in cfg.items():
        if isinstance(value, (dict, list)) or (isinstance(value, str) and len(value) > 256):
            raise CheckpointError(f"{where}: config option {key[:80]!r} must be a short scalar, got {str(value)[:40]!r}...")
        if isinstance(value, float) and not (math.isfinite(value) and 0 <= value <= MAX_OPTION):
            raise CheckpointError(f"{where}: config option {key!r}={value!r} must be a finite number in [0, {MAX_OPTION}]")
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_OPTION:
            raise CheckpointError(f"{where}: config option {key!r}={value!r} must lie in [0, {MAX_OPTION}]")
    for key, limit in (("num_classes", MAX_CLASSES), ("in_chans", MAX_CHANS)):
        if key in cfg:
            cfg[key] = _positive_int(where, f"config {key}", cfg[key], limit)
    if meta.get("num_classes"):
        top = _positive_int(where, "num_classes", meta["num_classes"], MAX_CLASSES)
        if cfg.setdefault("num_classes", top) != top:
            raise CheckpointError(f"{where}: metadata num_classes={top} disagrees with its config ({cfg['num_classes']})")
    return cfg


def model_spec(where: str, meta: dict[str, str], *, default_arch: str | None = None) -> tuple[str, dict]:
    """The (arch, config) a checkpoint's metadata asks to rebuild: a registered arch, a valid config."""
    from . import models

    arch = meta.get("arch") or default_arch
    if not arch:
        raise CheckpointError(f"{where}: no shiftkit metadata (arch); import it first: shiftkit import {where} --arch NAME")
    if arch not in models.MODELS:
        raise CheckpointError(f"{where}: metadata arch {arch[:80]!r} is not a known model; valid: {', '.join(models.names())}")
    return arch, checkpoint_config(where, meta)


def model_from_checkpoint(path: str | os.PathLike, *, default_arch: str | None = None,
                          pruned: bool = False) -> nn.Module:
    """A fresh model of the arch and config in a shiftkit checkpoint's metadata (weights not loaded).

    The model is first built on the meta device (no memory) and compared with the tensor shapes the file
    declares, so a config asking for a width of a billion is refused before anything is allocated.
    `pruned`: the file holds a structurally pruned (narrower) copy of this arch, so shapes may differ;
    the dense model may then be at most 100x the file's size (a channel-pruned net keeps far more).
    Missing, unreadable or lying metadata -> CheckpointError naming the file.
    """
    from . import models

    with LazyCheckpoint(path) as ckpt:
        arch, cfg = model_spec(str(path), ckpt.metadata, default_arch=default_arch)
        declared = {k: ckpt.shape(k) for k in ckpt.keys()}
    try:
        with torch.device("meta"):
            skeleton = models.create(arch, **cfg)
    except (TypeError, ValueError, RuntimeError, OverflowError, ZeroDivisionError) as e:
        raise CheckpointError(f"{path}: config metadata {json.dumps(cfg)[:200]} does not build model {arch!r} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    state = skeleton.state_dict()
    for name, t in state.items():
        if not pruned and name in declared and list(t.shape) != declared[name]:
            raise CheckpointError(f"{path}: config metadata builds tensor {name!r} of shape {tuple(t.shape)}, "
                                  f"the file holds {tuple(declared[name])}")
    wanted = sum(t.numel() for t in state.values())
    held = sum(math.prod(s) for s in declared.values())
    if wanted > (100 if pruned else 2) * held + (1 << 20):
        raise CheckpointError(f"{path}: config metadata builds a model of {wanted} values, the file holds {held}")
    return models.create(arch, **cfg)


def import_pt(path: str | os.PathLike) -> dict[str, Tensor]:
    """A `.pt`/`.pth` state dict, loaded with weights_only=True (a pickle cannot run code) after size
    checks from the zip and pickle headers (`_pt.load_pt`): nothing it claims is allocated unchecked."""
    from ._pt import load_pt

    obj = load_pt(path)
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return obj
