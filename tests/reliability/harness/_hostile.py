"""Hostile checkpoints: damaged or lying safetensors files and `.pt` pickles that would run code.

Every file must be refused with a CheckpointError naming it, by every reader (load_checkpoint,
LazyCheckpoint reading all tensors, import_pt, a transfer merger's absorb), with nothing executed and
the model untouched. `hostile_files` writes the corpus; `check_hostile` runs every reader on it.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from shiftkit.checkpoints import LazyCheckpoint, import_pt, load_checkpoint, model_metadata, save_checkpoint
from shiftkit.errors import CheckpointError, ShiftkitError
from ._tiny import tiny_net

__all__ = ["hostile_files", "check_hostile"]


def _split(raw: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header: dict | bytes, body: bytes) -> bytes:
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(hb)) + hb + body


def _with_tensor(state: dict, meta: dict, name: str, value) -> bytes:
    state = {k: v.clone() for k, v in state.items()}
    if value is None:
        del state[name]
    else:
        state[name] = value
    return st_save(state, metadata=meta)


def _damaged(raw: bytes) -> dict[str, bytes]:
    """Byte-level damage to a valid file: truncations, header length lies, header garbage."""
    header, body = _split(raw)
    n = len(raw) - len(body) - 8
    key = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32" and len(v["shape"]) > 1)
    out = {f"truncated_at_{k}": raw[:k] for k in (0, 1, 7, 8, 9, 8 + n // 2, 8 + n, 8 + n + 1, len(raw) // 2, len(raw) - 1)}
    out.update({f"header_len_{v:#x}": struct.pack("<Q", v) + raw[8:]
                for v in (0, 1, n - 1, n + 1, len(raw), 1 << 32, 1 << 40, (1 << 63) - 1, (1 << 64) - 1)})
    out["trailing_bytes"] = raw + b"\0" * 16
    out["header_not_utf8"] = _join(b"\xff" * n, body)
    out["header_not_json"] = _join(b"{" * n, body)
    out["header_is_list"] = _join(b"[]", body)
    out["header_metadata_not_str"] = _join({**header, "__metadata__": {"arch": 5}}, body)
    bad = {"offsets_past_end": {"data_offsets": [0, 1 << 40]}, "offsets_reversed": {"data_offsets": [8, 0]},
           "dtype_unknown": {"dtype": "X99"}, "dtype_wrong_size": {"dtype": "F64"}, "shape_negative": {"shape": [-1]},
           "shape_overflow": {"shape": [1 << 31, 1 << 31, 1 << 31]}, "shape_not_list": {"shape": "big"},
           "entry_not_dict": None}
    for name, edit in bad.items():
        out[f"header_{name}"] = _join({**header, key: 7 if edit is None else {**header[key], **edit}}, body)
    out["random_bytes"] = bytes((i * 151 + 7) % 256 for i in range(len(raw)))
    return out


def _invalid_content(model: nn.Module) -> dict[str, bytes]:
    """Well-formed files whose tensors do not fit the model: missing / extra / shape / dtype / NaN / Inf / arch."""
    state, meta = model.state_dict(), model_metadata(model)
    w, b, bn = "features.0.weight", "classifier.3.bias", "features.1.running_var"
    out = {"missing_tensor": _with_tensor(state, meta, b, None),
           "extra_tensor": _with_tensor(state, meta, "bogus.weight", torch.zeros(3)),
           "misshaped_tensor": _with_tensor(state, meta, b, torch.zeros(state[b].numel() + 1)),
           "transposed_tensor": _with_tensor(state, meta, "classifier.3.weight", state["classifier.3.weight"].t().contiguous()),
           "scalar_for_tensor": _with_tensor(state, meta, b, torch.zeros(())),
           "wrong_dtype_f64": _with_tensor(state, meta, w, state[w].double()),
           "wrong_dtype_f16": _with_tensor(state, meta, w, state[w].half()),
           "wrong_dtype_int": _with_tensor(state, meta, w, state[w].int()),
           "wrong_dtype_counter": _with_tensor(state, meta, "features.1.num_batches_tracked", torch.zeros((), dtype=torch.int32)),
           "wrong_arch": st_save({k: v.clone() for k, v in state.items()}, metadata={**meta, "arch": "resnet20"})}
    for tag, value in (("nan", float("nan")), ("posinf", float("inf")), ("neginf", float("-inf"))):
        for name in (w, bn):
            t = state[name].clone()
            t.view(-1)[-1] = value
            out[f"{tag}_in_{name}"] = _with_tensor(state, meta, name, t)
    return out


class _Payload:
    """Pickles to a call of `fn(*args)`: what a malicious checkpoint runs at load time if allowed."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _evil_pt(marker: Path) -> dict[str, bytes]:
    """`.pt` files that would create `marker` if unpickled without weights_only."""
    import io

    payloads = {"os_system": _Payload(os.system, f"touch {marker}"), "open": _Payload(open, str(marker), "w"),
                "exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
                "eval": _Payload(eval, f"open({str(marker)!r}, 'w')")}
    out = {}
    for name, p in payloads.items():
        out[f"pickle_{name}"] = pickle.dumps({"w": p}, protocol=2)
        out[f"pickle5_{name}"] = pickle.dumps(p, protocol=5)
        buf = io.BytesIO()
        torch.save({"state_dict": {"w": torch.ones(2), "x": p}}, buf)  # torch's zip format, evil value inside
        out[f"torchzip_{name}"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save({"w": torch.ones(4)}, buf)
    good = buf.getvalue()
    out.update({"torchzip_truncated": good[: len(good) // 2], "torchzip_garbage": bytes(64), "empty": b"",
                "not_a_state_dict": pickle.dumps([1, 2, 3]), "state_dict_of_ints": pickle.dumps({"w": 1})})
    return out


def hostile_files(folder: Path, model: nn.Module, marker: Path) -> dict[str, list[Path]]:
    """Write the corpus: {"safetensors": [...], "pt": [...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.safetensors"
    save_checkpoint(good, model)
    st = {**_damaged(good.read_bytes()), **_invalid_content(model)}
    good.unlink()
    files: dict[str, list[Path]] = {"safetensors": [], "pt": []}
    for name, data in st.items():
        (folder / f"{name}.safetensors").write_bytes(data)
        files["safetensors"].append(folder / f"{name}.safetensors")
    for name, data in _evil_pt(marker).items():
        (folder / f"{name}.pt").write_bytes(data)
        files["pt"].append(folder / f"{name}.pt")
    as_st = folder / "pt_renamed.safetensors"  # a pickle posing as safetensors
    as_st.write_bytes((folder / "pickle_os_system.pt").read_bytes())
    files["safetensors"].append(as_st)
    return files


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(model: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def _expect_refusal(path: Path, call) -> str | None:
    """None if `call()` raises a CheckpointError naming `path`, else what went wrong."""
    try:
        call()
    except CheckpointError as e:
        return None if str(path) in str(e) else f"CheckpointError does not name the file: {e}"
    except ShiftkitError as e:
        return f"{type(e).__name__} instead of CheckpointError: {e}"
    except Exception as e:  # noqa: BLE001  (what this check is for)
        return f"escaped {type(e).__name__}: {str(e)[:200]}"
    return "accepted"


def _read_all(path: Path) -> None:
    with LazyCheckpoint(path) as ck:
        for k in ck.keys():
            ck.shape(k)
            ck.get(k)


def check_hostile(folder: Path, *, merger_factory=None) -> dict:
    """Run every reader on every hostile file; returns counts and the failures (empty = all refused).

    Args:
        merger_factory: optional `() -> transfer merger` whose absorb() must refuse each safetensors file
            leaving its model untouched and writing nothing to its run_dir.
    """
    marker = folder / "EXECUTED"
    model = tiny_net(0)
    files = hostile_files(folder / "files", model, marker)
    target, snap = tiny_net(1), None
    snap = _snapshot(target)
    failures, checks = [], 0
    for path in files["safetensors"]:
        for reader, call in (("load_checkpoint", lambda: load_checkpoint(path, target)),
                             ("LazyCheckpoint", lambda: _read_all(path))):
            problem = _expect_refusal(path, call)
            checks += 1
            if reader == "LazyCheckpoint" and problem == "accepted":
                problem = None  # content checks (shape, NaN, arch) are the model-aware readers' job
            if problem:
                failures.append({"file": path.name, "reader": reader, "problem": problem})
            if not _same(target, snap):
                failures.append({"file": path.name, "reader": reader, "problem": "model changed"})
                target.load_state_dict(snap)
        if merger_factory is not None:
            merger = merger_factory()
            msnap = _snapshot(merger.model)
            problem = _expect_refusal(path, lambda: merger.absorb(path))
            checks += 1
            if problem or not _same(merger.model, msnap) or (merger.run_dir and merger.run_dir.exists() and any(merger.run_dir.iterdir())):
                failures.append({"file": path.name, "reader": "absorb", "problem": problem or "state changed"})
    for path in files["pt"]:
        problem = _expect_refusal(path, lambda: import_pt(path))
        checks += 1
        if problem:
            failures.append({"file": path.name, "reader": "import_pt", "problem": problem})
    if marker.exists():
        failures.append({"file": "*.pt", "reader": "import_pt", "problem": f"code ran: {marker} was created"})
    return {"files": sum(len(v) for v in files.values()), "safetensors_files": len(files["safetensors"]),
            "pt_files": len(files["pt"]), "reader_checks": checks, "code_executed": marker.exists(),
            "failures": failures}


def check_hostile_cli(folder: Path, runner, *, limit: int | None = None) -> dict:
    """`shiftkit import` and `shiftkit eval` on every hostile file: exit code != 0 and one stderr line
    naming the file. `runner(argv) -> (exit code, stderr)`; `limit` files per kind (None = all)."""
    from ._badopts import _judge

    marker = folder / "EXECUTED"
    files = hostile_files(folder / "files", tiny_net(0), marker)
    out, failures, checks = folder / "imported.safetensors", [], 0
    for path in files["safetensors"][:limit] + files["pt"][:limit]:
        for argv in (["import", str(path), "--arch", "small_cnn", "--num-classes", "4", "--in-chans", "1", "--out", str(out)],
                     ["eval", str(path), "--dataset", "fashion_mnist", "--root", str(folder / "no-data")]):
            rc, err = runner(argv)
            checks += 1
            problem = _judge(rc, err) or (None if path.name in err else f"error does not name the file: {err.strip()[:200]}")
            if problem:
                failures.append({"file": path.name, "command": argv[0], "problem": problem})
    if marker.exists() or out.exists():
        failures.append({"file": "*", "command": "import", "problem": "code ran or a hostile file was imported"})
    return {"cli_checks": checks, "failures": failures}
