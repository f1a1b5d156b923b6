"""What a resumed transfer run must share with the run that made its run dir: the merge config and the target
data (issue 22 §2: `transfer --resume` with another --few-shot reused the old model and recorded the new setting).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from ..data.domains import Domain
from ..errors import ConfigError

__all__ = ["data_id", "same_run", "source_ids", "same_sources"]


def data_id(target: Domain) -> dict:
    """{domain, train, val, sha256}: the labelled target data, hashed in chunks (bounded memory, any storage)."""
    h = hashlib.sha256()
    for split in (target.train, target.val):
        h.update(f"{len(split)}:{tuple(split.shape)}:".encode())
        h.update(split.labels.detach().cpu().numpy().tobytes())
        for i in range(0, len(split), 4096):
            h.update(torch.as_tensor(split.images[i:i + 4096]).detach().cpu().contiguous().numpy().tobytes())
    return {"domain": target.name, "train": len(target.train), "val": len(target.val), "sha256": h.hexdigest()[:16]}


def same_run(state: Path, log: dict, config: dict, target: dict) -> None:
    """ConfigError naming what differs when a run dir was made with another merge config (seed, epochs, lr...)
    or for other target data (few-shot count, target domain, data seed); a state from before target data was
    recorded is resumed with a warning."""
    then = {k: v for k, v in log["config"].items() if k != "progress"} if isinstance(log["config"], dict) else {}
    diffs = [f"{k}: {then.get(k)!r} then, {v!r} now" for k, v in config.items() if k != "progress" and then.get(k) != v]
    diffs += [f"{k}: {then[k]!r} then, unset now" for k in then if k not in config]
    if diffs:
        raise ConfigError(f"{state}: run was made with another config ({'; '.join(diffs)}): use a new output "
                          "folder, or resume with the same settings")
    old = log.get("target")
    if not isinstance(old, dict):
        warnings.warn(f"{state}: made before target data was recorded; cannot check it is the same target data")
        return
    diffs = [f"target {k}: {old.get(k)!r} then, {v!r} now" for k, v in target.items() if old.get(k) != v]
    if diffs:
        raise ConfigError(f"{state}: run was made for other target data ({'; '.join(diffs)}; the few-shot count, "
                          "target domain or data seed differ): use a new output folder, or resume with the same data")


_HASHES: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256 prefix: each source file is read once per process


def _file_id(path: str) -> str | None:
    """A source file's content hash (None when it is gone); streamed in 1 MiB chunks, cached while unchanged."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()[:16]
    return _HASHES[key]


def source_ids(sources: list[str]) -> dict[str, str | None]:
    """{source path: content hash} of the sources a run has absorbed (recorded in its log)."""
    return {s: _file_id(s) for s in sources}


def same_sources(state: Path, log: dict) -> None:
    """ConfigError naming a source whose file changed since the run absorbed it (a zoo rebuilt in place)."""
    then = log.get("sources")
    if not isinstance(then, dict):  # a log from before sources were recorded
        return
    changed = [s for s, h in then.items() if h is not None and _file_id(str(s)) != h]
    if changed:
        raise ConfigError(f"{state}: source {changed[0]} changed since this run absorbed it (a zoo rebuilt in "
                          "place?): use a new output folder, or resume with the same source files")
