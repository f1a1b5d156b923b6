"""Connectivity between a layer's input and output channels: the weights of GC-Net's ghost network.

For a Conv2d / Linear m with input channels i and output channels j, run class-balanced calibration data
through the network and take x_i, y_j per sample (conv maps averaged over space, tokens averaged for
Linear on sequences); conn[j, i] = |Pearson corr(x_i, y_j)| computed within each class, averaged over
classes. Two readings of x:
- "input":  x = m's input (the child's input), y = m's pre-activation output;
- "parent": x = the output of m's parent, the last Conv2d / Linear run before m whose output width
  matches m's input width (the network input for the first layer; a Linear after a flatten repeats each
  parent channel over its positions) - the reading of the authors' lab.

Two further readings (options, so a verdict on GC-Net covers more than one interpretation):
- pooling="position": no spatial pooling; every output position is a sample. y_j(p) is channel j of m's
  output at position p, x_i(p) channel i of the input (or parent) map average-pooled to m's output grid
  (a strided conv sees a downsampled input), so n = images x positions. Linear layers are unchanged.
- classwise=False: one correlation over all calibration samples (labels ignored; between-class signal
  kept) instead of the average of within-class correlations.

One forward pass; per class only running sums (n, Σx, Σy, Σx², Σy², Σyxᵀ) are kept and turned into
correlations with matmuls: no loop over channel pairs, no activations kept beyond the current batch.

Reference: GC-Net (see seeds/); Pearson correlation via moments (any statistics textbook).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.base import ArrayDataset
from ..device import batches, model_device
from ..progress import Progress
from ..errors import ConfigError
from .base import prunable_modules

__all__ = ["READINGS", "POOLINGS", "Moments", "pearson", "connectivity_from_moments", "compute_connectivity",
           "pooled_activations", "connectivity_reference", "check_classes", "calibration_subset"]

READINGS = ("input", "parent")
POOLINGS = ("space", "position")  # conv maps averaged over space | every output position a sample


@dataclass
class Moments:
    """Per-class running sums for one module (float64): n (C,), sx / sxx (C, I), sy / syy (C, O), sxy (C, O, I).

    Values are shifted by the first batch's channel means before summing (correlation is shift
    invariant; the shift keeps the one-pass variance exact to ~1e-15 when means dwarf spreads).
    """

    n: Tensor
    sx: Tensor
    sxx: Tensor
    sy: Tensor
    syy: Tensor
    sxy: Tensor
    shift_x: Tensor | None = None
    shift_y: Tensor | None = None

    @classmethod
    def zeros(cls, num_classes: int, n_out: int, n_in: int, *, device: torch.device | None = None) -> "Moments":
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)  # noqa: E731
        return cls(z(num_classes), z(num_classes, n_in), z(num_classes, n_in), z(num_classes, n_out),
                   z(num_classes, n_out), z(num_classes, n_out, n_in))

    def update(self, x: Tensor, y: Tensor, labels: Tensor) -> None:
        """Add a batch: x (B, I), y (B, O), labels (B,)."""
        x, y = x.detach().double(), y.detach().double()
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
        x, y = x - self.shift_x, y - self.shift_y
        onehot = F.one_hot(labels, len(self.n)).double()  # (B, C)
        self.n += onehot.sum(0)
        self.sx += onehot.T @ x
        self.sxx += onehot.T @ (x * x)
        self.sy += onehot.T @ y
        self.syy += onehot.T @ (y * y)
        for c in labels.unique().tolist():  # one matmul per class present (<= C), never per channel pair
            sel = labels == c
            self.sxy[c] += y[sel].T @ x[sel]  # (O, I)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.n, self.sx, self.sxx, self.sy, self.syy, self.sxy))


def pearson(m: Moments) -> Tensor:
    """Per-class Pearson correlation (C, O, I); a constant channel gives 0 (np.corrcoef gives nan)."""
    n = m.n.clamp_min(1)[:, None]
    mx, my = m.sx / n, m.sy / n                      # (C, I), (C, O)
    vx = (m.sxx / n - mx * mx).clamp_min(0)          # (C, I)
    vy = (m.syy / n - my * my).clamp_min(0)          # (C, O)
    cov = m.sxy / n[:, :, None] - my[:, :, None] * mx[:, None, :]  # (C, O, I)
    den = (vy[:, :, None] * vx[:, None, :]).sqrt()
    return torch.where(den > 1e-300, cov / den.clamp_min(1e-300), torch.zeros_like(cov)).clamp_(-1, 1)


def connectivity_from_moments(m: Moments, *, name: str = "") -> Tensor:
    """conn (O, I) = |Pearson| averaged over classes; every class must have at least 2 samples."""
    thin = (m.n < 2).nonzero().flatten().tolist()
    if thin:
        raise ConfigError(f"calibration data has fewer than 2 samples of class(es) {thin}"
                          f"{f' at {name!r}' if name else ''} (option: calibration data / --dataset)")
    return pearson(m).abs().mean(0)


def check_classes(labels: Tensor, num_classes: int) -> None:
    """ConfigError listing the classes that calibration data lacks (needs >= 2 samples each)."""
    counts = torch.bincount(labels, minlength=num_classes)
    thin = (counts < 2).nonzero().flatten().tolist()
    if thin:
        raise ConfigError(f"calibration data is missing class(es) {thin} (fewer than 2 samples each; "
                          "option: calibration data / --dataset / --calib-per-class)")


def _pool(t: Tensor, module: nn.Module, batch: int) -> Tensor:
    """(B, channels): conv maps averaged over space, Linear tokens averaged; batch-major folds undone."""
    if isinstance(module, nn.Conv2d) or (t.ndim == 4 and not isinstance(module, nn.Linear)):
        return t.reshape(batch, -1, t.shape[1], t.shape[2] * t.shape[3]).mean((1, 3))
    return t.reshape(batch, -1, t.shape[-1]).mean(1)


def _gather_groups(conn: Tensor, weight: Tensor, groups: int) -> Tensor:
    """Full (O, I) connectivity -> the weight's connection graph (O, I / groups) of a grouped conv."""
    if groups == 1:
        return conn
    o, i_per = weight.shape[:2]
    cols = (torch.arange(o) // (o // groups))[:, None] * i_per + torch.arange(i_per)[None, :]  # (O, I/g)
    return conn.gather(1, cols)


def _space_mean(t: Tensor) -> Tensor:
    return t.mean((2, 3)) if t.ndim == 4 else t


def _positions(t: Tensor, like: Tensor) -> Tensor:
    """(B, C, H, W) map average-pooled to `like`'s grid, as samples (B * H' * W', C)."""
    if t.ndim != 4:
        raise ConfigError(f"pooling='position' needs a feature map as parent; got shape {tuple(t.shape)} "
                          "(use pooling='space')")
    if t.shape[2:] != like.shape[2:]:
        t = F.adaptive_avg_pool2d(t, like.shape[2:])
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


Sink = Callable[[str, Tensor, Tensor, Tensor], None]  # (module name, x (B, I), y (B, O), labels (B,))


class _Hooks:
    """Forward hooks that hand (x, y) per module and batch to a sink; keeps only the current batch."""

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module], reading: str, sink: Sink, *,
                 pooling: str = "space", classwise: bool = True) -> None:
        if reading not in READINGS:
            raise ConfigError(f"reading={reading!r}; valid: {', '.join(READINGS)}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling={pooling!r}; valid: {', '.join(POOLINGS)}")
        self.model, self.modules, self.reading, self.sink = model, modules, reading, sink
        self.pooling, self.classwise = pooling, classwise
        self.trail: list[tuple[str, Tensor]] = []  # (module name, pooled output) of the current batch
        self.labels = torch.empty(0, dtype=torch.long)  # labels of the current batch (set by _run)
        self.handles: list = []

    def __enter__(self) -> "_Hooks":
        self.handles.append(self.model.register_forward_pre_hook(self._start))
        for name, m in self.modules.items():
            self.handles.append(m.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()

    def _start(self, model: nn.Module, inputs: tuple) -> None:
        x = inputs[0]
        self.batch = x.shape[0]
        if self.pooling == "position" and x.ndim == 4:
            self.trail = [("<input>", x)]  # maps kept for the current batch only
        else:
            self.trail = [("<input>", x.mean((2, 3)) if x.ndim == 4 else x.reshape(self.batch, -1))]

    def _parent(self, name: str, m: nn.Module) -> Tensor:
        width = m.weight.shape[1] * getattr(m, "groups", 1)
        trail = [(n, _space_mean(t)) for n, t in self.trail] if isinstance(m, nn.Linear) else self.trail
        for _, out in reversed(trail):  # exact width first, then a flatten (Linear only)
            if out.shape[1] == width:
                return out
        for _, out in reversed(trail):
            if isinstance(m, nn.Linear) and width % out.shape[1] == 0:
                return out.repeat_interleave(width // out.shape[1], dim=1)
        raise ConfigError(f"reading='parent': no parent layer of {name!r} has output width {width}; use reading='input'")

    def _make_hook(self, name: str):
        def hook(m: nn.Module, inputs: tuple, output: Tensor) -> None:
            labels = self.labels if self.classwise else torch.zeros_like(self.labels)
            if self.pooling == "position" and isinstance(m, nn.Conv2d):
                x = inputs[0] if self.reading == "input" else self._parent(name, m)  # (B, I, H, W)
                x, y = _positions(x, output), _positions(output, output)         # (B*P, I), (B*P, O)
                self.trail.append((name, output))
                labels = labels.repeat_interleave(output.shape[2] * output.shape[3])
            else:
                y = _pool(output, m, self.batch)  # (B, O)
                x = _pool(inputs[0], m, self.batch) if self.reading == "input" else self._parent(name, m)  # (B, I)
                self.trail.append((name, output if self.pooling == "position" and output.ndim == 4 else y))
            self.sink(name, x, y, labels)

        return hook


def _run(model: nn.Module, data: ArrayDataset, batch_size: int, hooks: _Hooks) -> None:
    was_training = model.training
    model.eval()
    try:
        with hooks, torch.no_grad():
            with Progress(total=-(-len(data) // batch_size), desc="calibration") as bar:  # a bar on a terminal only
                order = torch.arange(len(data))
                for x, y in batches(data.images, data.labels, batch_size, order=order, device=model_device(model)):
                    hooks.labels = y
                    model(x)
                    bar.update()
    finally:
        model.train(was_training)


def compute_connectivity(model: nn.Module, data: ArrayDataset, *, reading: str = "input", batch_size: int = 256,
                         skip_unsupported: bool = False, pooling: str = "space", classwise: bool = True,
                         full: bool = False) -> dict[str, Tensor]:
    """The ghost network: {weight name: conn shaped like the module's connection graph (out, in / groups)}.

    One forward pass over `data` (use a class-balanced calibration set, clean or shifted).
    Args:
        pooling: "space" (conv maps averaged over space) or "position" (every output position a sample).
        classwise: True averages |within-class correlation| over classes; False pools all samples.
        full: return the full (out, in) matrix also for grouped convs (channel importance reads columns).
    """
    modules = prunable_modules(model, skip_unsupported=skip_unsupported)
    check_classes(data.labels, data.num_classes)
    num_classes = data.num_classes if classwise else 1
    moments: dict[str, Moments] = {}

    def sink(name: str, x: Tensor, y: Tensor, labels: Tensor) -> None:
        if name not in moments:
            moments[name] = Moments.zeros(num_classes, y.shape[1], x.shape[1], device=y.device)
        moments[name].update(x, y, labels)

    _run(model, data, batch_size, _Hooks(model, modules, reading, sink, pooling=pooling, classwise=classwise))
    out = {}
    for name, m in modules.items():
        if name not in moments:
            raise ConfigError(f"module {name!r} never ran in the calibration forward pass; it cannot be scored")
        conn = connectivity_from_moments(moments[name], name=name).float()
        out[f"{name}.weight"] = conn if full else _gather_groups(conn, m.weight, getattr(m, "groups", 1))
    return out


def pooled_activations(model: nn.Module, data: ArrayDataset, *, reading: str = "input", batch_size: int = 256,
                       pooling: str = "space") -> dict[str, tuple[Tensor, Tensor]]:
    """All (x (N, I), y (N, O)) per module, stored: for the reference check and benchmarks only.

    With pooling="position" a conv's rows are (image, position) samples: N = images x output positions.
    """
    modules = prunable_modules(model)
    store: dict[str, tuple[list, list]] = {}

    def sink(name: str, x: Tensor, y: Tensor, labels: Tensor) -> None:
        xs, ys = store.setdefault(name, ([], []))
        xs.append(x)
        ys.append(y)

    _run(model, data, batch_size, _Hooks(model, modules, reading, sink, pooling=pooling))
    return {f"{n}.weight": (torch.cat(xs), torch.cat(ys)) for n, (xs, ys) in store.items()}


def connectivity_reference(x: np.ndarray, y: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The lab's per-pair loop: np.corrcoef for every (j, i) and class; nan -> 0; |.| averaged over classes.

    O(O × I × C) Python iterations: for agreement tests and the speed benchmark only.
    """
    out = np.zeros((y.shape[1], x.shape[1]))
    for c in range(num_classes):
        xc, yc = x[labels == c], y[labels == c]
        for j in range(y.shape[1]):
            for i in range(x.shape[1]):
                r = np.corrcoef(xc[:, i], yc[:, j])[0, 1]
                out[j, i] += 0.0 if np.isnan(r) else abs(r)
    return out / num_classes


def calibration_subset(data: ArrayDataset, per_class: int | None, *, seed: int = 0) -> ArrayDataset:
    """A class-balanced calibration set: `per_class` random images of every class (None: all of `data`)."""
    check_classes(data.labels, data.num_classes)
    if per_class is None:
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    picks = [order[data.labels[order] == c][:per_class] for c in range(data.num_classes)]
    return data.subset(torch.cat(picks))
