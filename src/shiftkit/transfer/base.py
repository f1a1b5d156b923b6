"""The transfer protocol, the method registry and the machinery every method shares.

`merger = create(name, model, target, run_dir=..., **cfg)`; `merger.absorb(path)` per source,
in order; `merger.finish()` spends any deferred target fine-tuning; `merger.model` is the result.
After every absorb the state (safetensors checkpoint whose metadata carries the JSON log) is
written to `run_dir`, so `resume()` continues a killed run to bitwise the same weights.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .._files import loads_bounded
from .._registry import Registry
from ..checkpoints import (LazyCheckpoint, atomic_write_json, check_arch, checkpoint_config, load_checkpoint,
                           read_metadata, save_checkpoint, validate_tensors)
from . import _kfold
from ._resume import data_id as _data_id, same_run as _same_run, same_sources as _same_sources, \
    source_ids as _source_ids
from ..data.base import ArrayDataset
from ..data.domains import Domain
from ..device import model_device
from ..errors import CheckpointError, ConfigError
from ..progress import Progress
from ..train import FitResult, TrainConfig, evaluate, fit, recalibrate_bn

__all__ = ["Merger", "MergeConfig", "BaseMerger", "TRANSFER", "register_transfer", "register_variant", "create",
           "names", "config_class", "run_sources"]


@runtime_checkable
class Merger(Protocol):
    model: nn.Module

    def absorb(self, source: str | Path) -> dict: ...


@dataclass(frozen=True)
class MergeConfig:
    """Options every method shares; the fine-tuning defaults are the GRASP reference's."""

    seed: int = 0
    initial_epochs: int = 3       # fine-tuning after the first source (reference: 3)
    finetune_epochs: int = 3      # fine-tuning after every later source (reference: 3)
    lr: float = 5e-5              # reference: AdamW lr 5e-5, wd 0.01, cosine schedule
    weight_decay: float = 0.01
    batch_size: int = 32          # reference batch; with 100 target images 128 would be one step per epoch
    select: str = "best_val"      # "best_val": best-validation epoch within each stage; "last": last epoch
    on_bad_source: str = "error"  # "error" rejects a NaN/Inf source; "skip" warns and leaves the run untouched
    # k >= 2: k-fold selection over every labelled target image (train ∪ val) instead of the ~20 val
    # images, for training-free selections and the deferred fine-tuning's epoch (see _kfold.py). 0: val split.
    val_folds: int = 0
    # re-estimate BN statistics on the target's train images (labels unused) before every training-free
    # selection scores a model: a source or a soup is judged with target statistics, not its own domain's
    bn_recalibrate: bool = False
    progress: bool = False
    precision: str = "fp32"       # autocast of the target fine-tuning (cosines, votes, selections stay fp32)
    augment: str = "none"         # training batches of the target fine-tuning (shiftkit.data.loader.AUGMENTS)

    def __post_init__(self) -> None:
        if self.on_bad_source not in ("error", "skip"):
            raise ConfigError(f"on_bad_source={self.on_bad_source!r}; valid: error, skip")
        if self.select not in ("best_val", "last"):
            raise ConfigError(f"select={self.select!r}; valid: best_val, last")
        if self.val_folds == 1 or self.val_folds < 0:
            raise ConfigError(f"val_folds={self.val_folds}; valid: 0 (the val split) or k >= 2 folds")
        if min(self.initial_epochs, self.finetune_epochs) < 0 or self.batch_size < 1:
            raise ConfigError("epochs must be >= 0 and batch_size >= 1")
        if not 0 < self.lr < math.inf or not 0 <= self.weight_decay < math.inf:  # NaN fails both
            raise ConfigError(f"lr={self.lr!r} must be finite and > 0, weight_decay={self.weight_decay!r} finite and >= 0")
        if not 0 <= self.seed <= 2**32 - 1:  # config.MAX_SEED: numpy's range, exact stage seeds
            raise ConfigError(f"seed={self.seed!r} must be in 0..{2**32 - 1}")

    def budget(self, k: int) -> int:
        """Total target fine-tuning epochs of a sequential run over k sources (the shared budget)."""
        return self.initial_epochs + max(k - 1, 0) * self.finetune_epochs


TRANSFER: Registry["BaseMerger"] = Registry("transfer method")
register_transfer = TRANSFER.register


def register_variant(name: str, cls: type, **defaults) -> None:
    """Register a configured instance of one class under a new name (mergekit style: not a copy)."""
    def factory(model: nn.Module, target: Domain, **cfg) -> "BaseMerger":
        return cls(model, target, **{**defaults, **cfg})

    factory.__doc__ = f"{cls.__name__} with {defaults}"
    factory.cls = cls
    TRANSFER.register(name)(factory)


def create(name: str, model: nn.Module, target: Domain, **cfg) -> "BaseMerger":
    """Build a registered transfer method. Unknown names raise ConfigError listing valid ones."""
    return TRANSFER.create(name, model, target, **cfg)


def names() -> list[str]:
    return TRANSFER.names()


def merger_class(name: str) -> type["BaseMerger"]:
    """The class behind a registered method (a variant's is the class it configures)."""
    entry = TRANSFER.get(name)
    return getattr(entry, "cls", entry)


def config_class(name: str) -> type[MergeConfig]:
    """The config dataclass of a registered method (its options and defaults)."""
    return merger_class(name).Config


class BaseMerger:
    """Validation, persistence, resume and the shared fine-tuning step. Subclasses implement `_absorb`."""

    Config: type[MergeConfig] = MergeConfig
    resume_from_checkpoint = False  # True: the model is the whole state; False: resume replays absorbs
    deferred_training = False       # True: merge first, then spend the whole target budget in finish()
    order_invariant = False         # True: the result does not depend on the source order (sums, means, votes,
                                    # a max, learned weights, or a ranking of its own); benchmarks run one order

    def __init__(self, model: nn.Module, target: Domain, *, run_dir: str | Path | None = None, **cfg) -> None:
        valid = [f.name for f in dataclasses.fields(self.Config)]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown option(s) {unknown}; valid: {', '.join(valid)}")
        self.cfg = self.Config(**cfg)
        self.model, self.target = model, target
        self.run_dir = Path(run_dir) if run_dir else None
        self.records: list[dict] = []
        self.finish_log: dict | None = None
        self.arch = SimpleNamespace(shiftkit_arch=getattr(model, "shiftkit_arch", None))
        self.num_classes = getattr(model, "shiftkit_config", {}).get("num_classes")
        # shapes/dtypes every source must match, kept on the meta device (no memory)
        self._folds: list[ArrayDataset] | None = None  # k-fold split of train ∪ val, made on first use
        self._val_cache: tuple[list[tuple], dict[str, float]] | None = None  # (state key, val metrics of self.model)
        self.expected = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in model.state_dict().items()}
        self._target_id: dict | None = None  # what identifies the target data (target_id), made on first use
        self.device = model_device(model)  # the merge runs where the model is: sources stream to it

    # ---- the protocol -------------------------------------------------------------------------
    @property
    def n_absorbed(self) -> int:
        return sum(not r.get("skipped") for r in self.records)

    def absorb(self, source: str | Path) -> dict:
        """Validate one source checkpoint, merge it in, persist the state; returns the log record."""
        path, stage = Path(source), len(self.records)
        if not self.check_source(path):
            record = {"source": str(path), "stage": stage, "skipped": True}
        else:
            record = {"source": str(path), "stage": stage, **self._absorb(path, stage)}
        self.records.append(record)
        self._persist()
        return record

    def finish(self) -> nn.Module:
        """Spend deferred target fine-tuning (merge-then-train methods); sequential methods need none."""
        if self.deferred_training and self.finish_log is None:
            self._before_finish()
            epochs, stage = self.deferred_budget(), len(self.records)
            if self.cfg.val_folds and epochs and self.cfg.select == "best_val":  # the model has not seen the target yet
                fit = _kfold.kfold_fit(self.model, self.folds(), self.train_config(epochs, stage))
            else:
                fit = self.fine_tune(epochs, stage)
            self.finish_log = {"epochs": epochs, "best_epoch": fit.best_epoch, "history": fit.history}
        return self.model

    def _before_finish(self) -> None:
        """Hook for a last merge step before the deferred fine-tuning (e.g. choosing a scale on val)."""

    def _absorb(self, path: Path, stage: int) -> dict:
        raise NotImplementedError

    # ---- shared mechanics ---------------------------------------------------------------------
    def check_source(self, path: Path) -> bool:
        """Stream the source once: arch, class count, names, shapes, dtypes, finiteness.

        Raises CheckpointError naming the file and tensor; returns False (warned) for a NaN/Inf
        source when on_bad_source="skip".
        """
        with LazyCheckpoint(path) as ckpt:
            check_arch(str(path), ckpt.metadata, self.arch)
            nc = checkpoint_config(str(path), ckpt.metadata).get("num_classes")
            if nc and self.num_classes is not None and nc != int(self.num_classes):
                raise CheckpointError(f"{path}: checkpoint has {nc} classes, model has {self.num_classes}")
            # keep=False: each tensor is checked and dropped, so memory stays flat in the number of sources
            _, nonfinite = validate_tensors(str(path), ckpt, self.expected, nonfinite=self.cfg.on_bad_source,
                                            keep=False)
        if nonfinite:
            warnings.warn(f"{path}: tensor {nonfinite[0]!r} holds NaN/Inf; source skipped, run unchanged")
            return False
        return True

    def open_source(self, path: str | Path) -> LazyCheckpoint:
        """A source read one tensor at a time, each tensor landing on the merge's device."""
        return LazyCheckpoint(path, device=self.device)

    def load_source(self, path: Path, into: nn.Module) -> None:
        load_checkpoint(path, into)

    def load_base(self, path: str | Path) -> dict[str, Tensor]:
        """Load the shared base checkpoint (validated like a source) into the model; returns a copy."""
        self.check_source(Path(path))
        load_checkpoint(path, self.model)
        return {k: v.clone() for k, v in self.model.state_dict().items()}

    def stage_seed(self, stage: int) -> int:
        """Each stage is seeded from (seed, stage index) alone, so a resumed run replays it exactly."""
        return self.cfg.seed * 100_003 + stage

    def train_config(self, epochs: int, stage: int, *, lr: float | None = None) -> TrainConfig:
        c = self.cfg
        return TrainConfig(epochs=epochs, batch_size=c.batch_size, lr=lr or c.lr, weight_decay=c.weight_decay,
                           schedule="cosine", select=c.select, seed=self.stage_seed(stage), progress=c.progress,
                           precision=c.precision, augment=c.augment)

    def fine_tune(self, epochs: int, stage: int, *, lr: float | None = None, model: nn.Module | None = None) -> FitResult:
        model = model if model is not None else self.model
        return fit(model, self.target.train, self.target.val, self.train_config(epochs, stage, lr=lr))

    def val_metrics(self, model: nn.Module | None = None) -> dict[str, float]:
        """Val loss/accuracy; for the merged model, reused while none of its tensors changed (a GRASP
        stage's `before` is the previous stage's `after`: one val pass saved per absorb)."""
        if model is not None and model is not self.model:
            return _metrics(model, self.target.val)
        key = _state_key(self.model)
        if self._val_cache is None or not _same_state(self._val_cache[0], key):
            self._val_cache = (key, _metrics(self.model, self.target.val))
        return dict(self._val_cache[1])

    def selection_metrics(self, model: nn.Module | None = None) -> dict[str, float]:
        """Metrics for a training-free selection: the val split, or (val_folds = k) the mean over k folds
        of train ∪ val, with the per-fold values. Only for models not trained on the target."""
        model = model if model is not None else self.model
        if self.cfg.bn_recalibrate:
            recalibrate_bn(model, self.target.train)
        if self.cfg.val_folds == 0:
            return self.val_metrics(model)
        return _kfold.fold_metrics(model, self.folds())

    def folds(self) -> list[ArrayDataset]:
        """The k-fold split of every labelled target image (made once, seeded by the run's seed)."""
        if self._folds is None:
            labelled = _kfold.pool(self.target.train, self.target.val)
            if len(labelled) < self.cfg.val_folds:
                raise ConfigError(f"val_folds={self.cfg.val_folds} exceeds the {len(labelled)} labelled target images")
            self._folds = _kfold.split_folds(labelled, self.cfg.val_folds, seed=self.cfg.seed)
        return self._folds

    def deferred_budget(self) -> int:
        return self.cfg.budget(self.n_absorbed)

    # ---- persistence ----------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def target_id(self) -> dict:
        """The target data this run merges for (domain name, train / val sizes, a hash of their images and
        labels): a resumed run must be for the same data, not only the same merge config."""
        if self._target_id is None:
            self._target_id = _data_id(self.target)
        return self._target_id

    def _log(self) -> dict:
        return {"method": type(self).__name__, "config": asdict(self.cfg), "records": self.records,
                "target": self.target_id(), "sources": _source_ids([r["source"] for r in self.records])}

    def _persist(self) -> None:
        if self.run_dir is None:
            return
        log = self._log()
        save_checkpoint(self.run_dir / "state.safetensors", self.state_tensors(),
                        metadata={"transfer_log": json.dumps(log, default=str), "arch": str(self.arch.shiftkit_arch)})
        atomic_write_json(self.run_dir / "log.json", log)

    def resume(self) -> list[str]:
        """Continue from run_dir: returns the sources already handled (absorbed or skipped), in order."""
        state = self.run_dir / "state.safetensors" if self.run_dir else None
        if state is None or not state.is_file():
            return []
        log = _read_log(state)
        _same_run(state, log, json.loads(json.dumps(asdict(self.cfg), default=str)), self.target_id())
        _same_sources(state, log)
        if self.resume_from_checkpoint:
            load_checkpoint(state, self.model)
            self.records = log["records"]
        else:  # training-free absorbs: replay them (deterministic), without rewriting the state
            run_dir, self.run_dir = self.run_dir, None
            for r in log["records"]:
                self.absorb(r["source"])
            self.run_dir = run_dir
        return [r["source"] for r in self.records]


def _state_key(model: nn.Module) -> list[tuple]:
    """Identity of a model's current values: each tensor's storage (held, so its address cannot be reused by
    another tensor while the key lives), data pointer and in-place version counter (bumped by copy_, optimizer
    steps, load_state_dict)."""
    return [(t.untyped_storage(), t.data_ptr(), t._version) for t in model.state_dict().values()]


def _same_state(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(x[1:] == y[1:] for x, y in zip(a, b))


def _metrics(model: nn.Module, ds: ArrayDataset) -> dict[str, float]:
    m = evaluate(model, ds)
    return {"accuracy": m["accuracy"], "loss": m["loss"]}


def _read_log(state: Path) -> dict:
    """The transfer log in a run dir's state checkpoint; CheckpointError if it is not a shiftkit run state."""
    meta = read_metadata(state)
    try:
        log = loads_bounded(meta["transfer_log"], f"{state}: transfer_log metadata", CheckpointError, max_bytes=64 << 20)
        if not isinstance(log.get("records"), list) or not all(isinstance(r, dict) and "source" in r for r in log["records"]):
            raise ValueError("records must be a list of {source: ...}")
        log["config"]  # noqa: B018  (must be present)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{state}: not a shiftkit transfer run state (transfer_log metadata unreadable: "
                              f"{type(e).__name__}: {e})") from None
    return log


def run_sources(merger: BaseMerger, sources: list[str | Path], *, resume: bool = False,
                on_absorb: Callable[[str, dict], None] | None = None) -> nn.Module:
    """Absorb every source in order (skipping those a resumed run already handled), then finish.
    `on_absorb(source, record)` runs after each absorb (e.g. a test-accuracy curve)."""
    if not sources:
        raise ConfigError("no sources given: transfer needs at least one source checkpoint")
    done = merger.resume() if resume else []
    todo = [str(s) for s in sources]
    if done != todo[:len(done)]:
        raise ConfigError(f"resume: run_dir holds sources {done}, which are not a prefix of {todo}")
    if merger.cfg.on_bad_source == "error":  # a bad 7th source fails now, not after hours of merging the first 6
        for s in todo[len(done):]:
            merger.check_source(Path(s))
    remaining = todo[len(done):]
    with Progress(total=len(remaining), desc=f"absorb ({type(merger).__name__})") as bar:
        for n, s in enumerate(remaining, len(done) + 1):
            record = merger.absorb(s)
            if on_absorb is not None:
                on_absorb(s, record)
            bar.update()
            val = (record.get("val_after") or {}).get("accuracy") if isinstance(record, dict) else None
            bar.milestone(f"source {n}/{len(todo)} {Path(s).stem}" + (f" val_acc {val:.4f}" if val is not None else ""))
    return merger.finish()
