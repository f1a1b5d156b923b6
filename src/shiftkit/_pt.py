"""`.pt` / `.pth` state dicts read without trusting the sizes they claim.

`torch.load(weights_only=True)` runs no code, but its allowed globals still allocate what the file asks
for: `bytearray(3 << 30)` or `torch.LongTensor(n)` from a few bytes, a legacy storage of any claimed
length, a tiny storage viewed as a huge tensor through stride 0, a zip record that inflates to gigabytes.
So, before loading: the zip directory (record sizes), then the pickle's opcodes are read statically
(nothing is built) and every number that sizes something must fit in the file; after loading: every
tensor must be a view that fits inside its storage. Zip files are memory-mapped, so loading them
allocates nothing until a tensor is used.
"""
from __future__ import annotations

import io
import os
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from ._files import open_regular, regular_file
from .errors import CheckpointError

__all__ = ["load_pt"]

_MALFORMED = (ValueError, EOFError, IndexError, KeyError, TypeError, AttributeError)  # genops on a broken stream
_SLACK = 1 << 20  # small files may still hold small tensors: sizes up to 1 Mi are always fine
# callables that allocate from an integer argument (bytearray(n), torch.LongTensor(n), ...)
_ALLOCATORS = re.compile(r"^(builtins|__builtin__) bytearray$|^torch(\.cuda)?(\.sparse)? \w*(Tensor|Storage)$")


def _pickle_ops(data: io.BufferedIOBase) -> list:
    """One pickle's opcodes as (name, arg) without building anything; raises on a malformed stream."""
    return [(op.name, arg, op) for op, arg, _ in pickletools.genops(data)]


def _scan(where: str, stream: io.BufferedIOBase, limit: int) -> None:
    """Emulate the pickle stack on literals only: persistent ids (storages) and integer arguments to
    allocating callables must not claim more elements than `limit`."""
    stack: list = []
    marks: list[int] = []
    memo: dict = {}
    for name, arg, op in _pickle_ops(stream):
        if name == "MARK":
            marks.append(len(stack))
            continue
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            memo[arg if name != "MEMOIZE" else len(memo)] = stack[-1] if stack else None
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
            continue
        if name == "GLOBAL" or name == "STACK_GLOBAL":
            if name == "STACK_GLOBAL":
                mod, qual = (stack.pop(), stack.pop())[::-1] if len(stack) >= 2 else (None, None)
                arg = f"{mod} {qual}"
            stack.append(("global", arg))
            continue
        if any(x is pickletools.markobject for x in op.stack_before):
            start = marks.pop() if marks else 0
            items, stack[start:] = stack[start:], []
        else:
            n = len(op.stack_before)
            items = stack[len(stack) - n:] if n else []
            del stack[len(stack) - n:]
        if name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            stack.append(tuple(items))
            continue
        if name == "EMPTY_TUPLE":
            stack.append(())
            continue
        if name in ("BINPERSID", "PERSID"):
            pid = items[0] if name == "BINPERSID" else tuple(str(arg).split())
            if isinstance(pid, tuple) and pid and pid[0] == "storage":
                numel = next((x for x in pid[4:5] if isinstance(x, int)), 0) if len(pid) > 4 else 0
                if numel > limit:
                    raise CheckpointError(f"{where}: a storage claims {numel} elements, the file holds {limit}")
            stack.append(None)
            continue
        if name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX") and len(items) >= 2:
            fn, args = items[0], items[1]
            if isinstance(fn, tuple) and fn[:1] == ("global",) and _ALLOCATORS.match(str(fn[1])):
                sizes = [a for a in (args if isinstance(args, tuple) else ()) if isinstance(a, int)]
                if any(a > limit for a in sizes) or (sizes and _prod(sizes) > limit):
                    raise CheckpointError(f"{where}: {fn[1].replace(' ', '.')}{tuple(sizes)} would allocate far "
                                          f"more than the file holds; refused")
        if len(op.stack_after) == 1 and not op.stack_before and arg is not None:
            stack.append(arg)  # a literal
        else:
            stack.extend([None] * len(op.stack_after))


def _prod(xs: list[int]) -> int:
    out = 1
    for x in xs:
        out *= max(x, 1)
    return out


def _check_zip(where: str, path: Path, size: int) -> None:
    """Record sizes from the zip directory: nothing inflates past the file; then the pickle's claims."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            inflated = sum(i.file_size for i in infos)
            if inflated > 2 * size + _SLACK:
                raise CheckpointError(f"{where}: zip records inflate to {inflated} bytes from a {size}-byte file "
                                      "(a zip bomb?); refused")
            pkl = [i for i in infos if i.filename.endswith("data.pkl")]
            if len(pkl) != 1:
                raise CheckpointError(f"{where}: not a torch.save zip (expected one data.pkl, found {len(pkl)})")
            with z.open(pkl[0]) as f:
                try:
                    _scan(where, io.BufferedReader(f), size + _SLACK)
                except CheckpointError:
                    raise
                except _MALFORMED:
                    pass  # torch.load fails at the same op and says why
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        raise CheckpointError(f"{where}: not a readable torch zip ({type(e).__name__}: {e})") from None


def _check_legacy(where: str, path: Path, size: int) -> None:
    """Legacy torch.save: four pickles (magic, protocol, sys info, the object) then raw storages. Each is
    scanned; a malformed stream ends the scan (torch then fails at the same op and names what it refused:
    every op it could run before that point has been checked)."""
    with open_regular(path, CheckpointError, "checkpoint") as f:
        for _ in range(4):
            try:
                _scan(where, f, size + _SLACK)
            except CheckpointError:
                raise
            except _MALFORMED:
                return


def _check_views(where: str, state: dict[str, Tensor], size: int) -> None:
    """Every tensor must fit inside its storage without repeating elements (stride-0 views of a tiny
    storage are refused), and all of them together must be of the order of the file."""
    total = 0
    for name, t in state.items():
        n, stor = t.numel(), t.untyped_storage().nbytes() // max(t.element_size(), 1)
        if n and (n > stor or any(st == 0 and sz > 1 for sz, st in zip(t.shape, t.stride()))):
            raise CheckpointError(f"{where}: tensor {name!r} of shape {tuple(t.shape)} is an expanded view of "
                                  f"a {stor}-element storage (it would take {n * t.element_size()} bytes); refused")
        total += n * t.element_size()
    if total > 4 * size + _SLACK:
        raise CheckpointError(f"{where}: tensors take {total} bytes from a {size}-byte file (shared storages "
                              "viewed many times); refused")


def load_pt(path: str | os.PathLike) -> object:
    """torch.load(weights_only=True) of a regular file after the size checks above; CheckpointError
    naming the file on anything wrong. Returns what the pickle holds (checked by the caller)."""
    path = regular_file(path, CheckpointError, "checkpoint")
    where, size = str(path), path.stat().st_size
    is_zip = zipfile.is_zipfile(path)
    (_check_zip if is_zip else _check_legacy)(where, path, size)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols > 2: noise beside the outcome
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... on hostile or corrupt files
        # torch's message suggests retrying with weights_only=False; show only what was refused
        found = re.search(r"(?:Unsupported global: |unsupported )GLOBAL [\w.]+|Unsupported operand \d+", str(e))
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]  # EOFError: no text
        reason = found.group(0) if found else lines[0][:200]
        raise CheckpointError(f"{path}: refused to load ({type(e).__name__}: {reason})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and all(isinstance(v, Tensor) for v in obj.values()):
        _check_views(where, obj, size)
    return obj
