"""One experiment = one YAML file: data, model, method, budget, output folder (pydantic-validated).

    exp = load_experiment("examples/grasp.yaml", overrides=["budget.epochs=1", "method.options.tau=0.5"])
    result = shiftkit.experiment.run_experiment(exp)

Unknown keys and wrong types raise ConfigError naming the file, the dotted key and its line.
Every flag of `shiftkit train / prune / transfer / sources` maps to a key (`shiftkit.cli._common.flag_keys`),
so a command line and a config file describe the same experiment.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_serializer,
                      model_validator)

from ._files import read_regular
from ._yaml import cut, line_of, load_yaml, short
from .errors import ConfigError, suggest

__all__ = ["Experiment", "DataConfig", "ModelConfig", "BudgetConfig", "EvalConfig", "TrainMethod", "TransferMethod",
           "PruneMethod", "load_experiment", "load_yaml", "parse_experiment", "apply_overrides", "parse_value", "split_override",
           "method_options"]


def _registered(module: str, registry: str):
    """A validator of `name`: it must be in shiftkit.<module>.<registry> (ConfigError lists the valid names)."""
    def check(cls, v: str) -> str:
        getattr(importlib.import_module(f"shiftkit.{module}"), registry).get(v)  # lazy: torch loads only here
        return v
    return field_validator("name")(check)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Seeds reach torch.manual_seed, numpy and seed arithmetic (a transfer stage's seed is seed * 100003 + stage):
# 0 .. 2**32 - 1 (numpy's own range) keeps every one of them exact, never wrapped or rejected mid-run.
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # a learning rate: finite and > 0


class DataConfig(_Strict):
    name: str = "driftfmnist"        # a name from `shiftkit data --list`
    root: Optional[str] = None       # None: $SHIFTKIT_DATA or Debian's fashion-mnist
    seed: Seed = 0                   # dataset construction (drift draw, splits)
    domain: int = 0                  # train / prune: the domain trained, fine-tuned and called "clean"
    target: int = -1                 # transfer: the target domain (sources = the others); -1 = last
    few_shot: Optional[int] = Field(None, ge=1)  # cap on the labelled train images: the target's (transfer), the
                                     # domain's (prune); >= 1 (0 or a negative count would not be a cap)
    calib_domain: Optional[int] = None  # prune: domain whose train split calibrates (default: domain)
    options: dict[str, Any] = Field(default_factory=dict)  # the reader's options, e.g. image_folder {size: 64, channels: 1}
    augment: str = "none"            # training batches only: none | flip | crop_flip (shiftkit.data.loader.AUGMENTS)

    _known = _registered("data", "DATASETS")

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: str) -> str:
        from .data.loader import AUGMENTS  # lazy: torch loads only here

        if v not in AUGMENTS:
            raise ValueError(f"valid: {', '.join(AUGMENTS)}")
        return v

    @field_validator("options")
    @classmethod
    def _own_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted({"seed", "root"} & set(v))
        if clash:
            raise ValueError(f"{clash} are data.seed / data.root, not reader options")
        return v

    def load(self) -> list:
        """The dataset's domains, built from this section (the one place a config loads data)."""
        from .data import load_domains

        return load_domains(self.name, self.root, seed=self.seed, **self.options)


class ModelConfig(_Strict):
    name: str = "small_cnn"          # a name from `shiftkit models`
    kwargs: dict[str, Any] = Field(default_factory=dict)  # family options (width, norm, ...)

    _known = _registered("models", "MODELS")


class BudgetConfig(_Strict):
    epochs: Optional[int] = Field(None, ge=0)       # None: the method's default (train 5, transfer 3 per stage)
    lr: Optional[Rate] = None                       # None: the method's default (train 1e-3, transfer 5e-5)
    batch_size: Optional[int] = Field(None, ge=1)   # None: the method's default (train 128, transfer 32)
    lr_grid: Optional[list[Rate]] = None            # train / prune fine-tuning: one run per lr from the same weights,
                                                    # the best-validation one kept (instead of lr)
    on_diverge: Literal["error", "keep_best"] = "error"  # train / prune: a NaN/Inf loss or weight stops the run
                                                    # (error) or keeps its best finite validation epoch, warned

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """The default on_diverge is left out of dumps: results of existing configs keep their bytes."""
        out = handler(self)
        if self.on_diverge == "error":
            out.pop("on_diverge", None)
        return out

    @model_validator(mode="after")
    def _one_lr(self) -> "BudgetConfig":
        if self.lr_grid is not None:
            if self.lr is not None:
                raise ValueError("give lr or lr_grid, not both")
            if not self.lr_grid or len(set(self.lr_grid)) != len(self.lr_grid) or min(self.lr_grid) <= 0:
                raise ValueError(f"lr_grid={self.lr_grid}: expected distinct positive learning rates, e.g. [1e-4, 1e-3]")
        return self


class EvalConfig(_Strict):
    domains: bool = True        # test on every domain (the drift bins = shifted accuracy)
    corruptions: bool = False   # also the corruption sets of the clean domain (5 severities each)


class TrainMethod(_Strict):
    kind: Literal["train"] = "train"
    init: Optional[str] = None              # start from pretrained weights in this file (shiftkit, timm or torchvision)


class TransferMethod(_Strict):
    kind: Literal["transfer"]
    name: str = "grasp"                     # `shiftkit transfer-methods`
    options: dict[str, Any] = Field(default_factory=dict)  # the method's config (checked against its dataclass)
    sources: Optional[list[str]] = None     # checkpoints (.safetensors, or .pt / torchvision / timm state dicts)
    base: Optional[str] = None              # shared base checkpoint (task arithmetic, TIES, ...); with a zoo: the
                                            # pretrained file every source is fine-tuned from (no base training)
    zoo: Optional[str] = None               # zoo folder (built when missing); default <out>/zoo
    base_domain: int = 0                    # zoo: domain the shared base is pretrained on
    base_epochs: int = Field(5, ge=0)       # zoo: base pretraining epochs
    source_epochs: int = Field(3, ge=0)     # zoo: fine-tuning epochs per source
    base_lr: Rate = 1e-3                    # zoo: base pretraining learning rate
    source_lr: Rate = 5e-4                  # zoo: per-source fine-tuning learning rate (stays near the base)
    zoo_batch_size: int = Field(128, ge=1)  # zoo: batch size (a few hundred images per domain: try 32)
    order: Literal["temporal", "reverse", "random"] = "temporal"  # source order (random: drawn from seed)
    resume: bool = False                    # continue the run in <out>
    budget: Optional[BudgetConfig] = None   # pipeline steps only: this step's fine-tuning budget (unset keys: the experiment's)

    _known = _registered("transfer", "TRANSFER")


class PruneMethod(_Strict):
    kind: Literal["prune"]
    name: str = "gcnet"                     # `shiftkit prune --help` lists the criteria
    options: dict[str, Any] = Field(default_factory=dict)  # the criterion's config (scope, hybrid_split, ...)
    sparsity: float = Field(0.9, ge=0, lt=1)  # fraction of prunable weights removed
    steps: int = Field(1, ge=1, le=1000)    # iterative rounds (prune -> fine-tune -> prune more); 1000 = prune.pruner.MAX_ROUNDS
    bn_recalibrate: bool = False            # re-estimate BN statistics on the calibration data after pruning
    checkpoint: Optional[str] = None        # dense model to prune; None: train one first for dense_epochs
    dense_epochs: int = Field(5, ge=0)      # only without a checkpoint
    structured: bool = False                # remove whole channels (torch-pruning): a smaller, faster model;
                                            # then `name` is a channel importance (gcnet, gcnet_hybrid, l1, l2, taylor, lamp, random)
    speedup: Optional[float] = Field(None, gt=1, allow_inf_nan=False)  # structured: FLOP reduction to reach
                                            # (MACs dense / MACs pruned)
    channel_sparsity: Optional[float] = Field(None, gt=0, lt=1)  # structured: or a fraction of channels removed
    budget: Optional[BudgetConfig] = None   # pipeline steps only: this step's fine-tuning budget, e.g. a longer
                                            # recovery after a prune (unset keys: the experiment's budget)

    @model_validator(mode="after")
    def _known(self) -> "PruneMethod":
        """`name` is a criterion (masks) or, with structured, a channel importance; both lazily checked."""
        if not self.structured:
            if self.speedup is not None or self.channel_sparsity is not None:
                raise ValueError("speedup / channel_sparsity need structured: true (--structured)")
            importlib.import_module("shiftkit.prune").PRUNE.get(self.name)
            return self
        importlib.import_module("shiftkit.prune.channel_importance").IMPORTANCES.get(self.name)
        if (self.speedup is None) == (self.channel_sparsity is None):
            raise ValueError("structured pruning needs exactly one of speedup (--speedup) and channel_sparsity "
                             "(--channel-sparsity)")
        return self


Method = Annotated[Union[TrainMethod, TransferMethod, PruneMethod], Field(discriminator="kind")]


class Experiment(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: Method = Field(default_factory=TrainMethod)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: Seed = 0                # training / merging / pruning seed and the few-shot draw
    device: str = "auto"          # auto | cpu | cuda | cuda:N | mps (auto: CUDA, else MPS, else CPU)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast of training passes; decisions stay fp32
    out: str = "runs/experiment"  # result.json, logs and (by default) model.safetensors go here
    save: Optional[str] = None    # the model checkpoint's path; None: <out>/model.safetensors
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # `shiftkit sweep`: {dotted key: values}
    pipeline: list[Method] = Field(default_factory=list)  # steps run in order instead of `method`, each on the
    # previous step's model (e.g. a transfer, then a structured prune of its result); results per step + the last

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        from .device import DEVICE_CHOICES, check_device_spec  # availability is checked when the run starts, not here

        try:
            return check_device_spec(v)
        except ConfigError:
            raise ValueError(f"not a device; valid: {DEVICE_CHOICES}") from None

    @model_validator(mode="after")
    def _pipeline(self) -> "Experiment":
        if self.pipeline and self.method != TrainMethod():  # the default method is what a dumped pipeline holds
            raise ValueError("give either method or pipeline (a list of steps), not both")
        if getattr(self.method, "budget", None) is not None:
            raise ValueError("method.budget is a pipeline step's own budget; a single method uses budget:")
        for i, step in enumerate(self.pipeline[1:], 1):
            if not isinstance(step, PruneMethod) or step.checkpoint:
                raise ValueError(f"pipeline[{i}]: a later step must be a prune step without a checkpoint "
                                 "(it prunes the previous step's model)")
        return self

    def dump(self) -> dict:
        return self.model_dump(mode="json")

    @property
    def model_path(self) -> Path:
        return Path(self.save) if self.save else Path(self.out) / "model.safetensors"


# ---- method options: checked against the method's own config dataclass ----------------------------
def _options_class(method: TransferMethod | PruneMethod) -> type:
    if isinstance(method, TransferMethod):
        from . import transfer

        return transfer.config_class(method.name)
    if method.structured:
        from .prune.structured import StructuredConfig

        return StructuredConfig
    from . import prune

    return prune.PRUNE.get(method.name).config_cls


def method_options(method: TransferMethod | PruneMethod) -> dict[str, Any]:
    """The method's options, type-checked (pydantic) against its config dataclass; raises ConfigError."""
    cls = _options_class(method)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(method.options) - set(valid))
    if unknown:
        hint = suggest(unknown[0], valid)
        near = f" (did you mean {hint!r}?)" if hint else ""
        raise ConfigError(f"method.options: unknown option(s) {unknown} for {method.name!r}{near}; valid: {', '.join(valid)}")
    fixed = ({"importance": method.name, "speedup": method.speedup, "channel_sparsity": method.channel_sparsity}
             if isinstance(method, PruneMethod) and method.structured else {})  # set by the method's own keys
    clash = sorted(set(fixed) & set(method.options))
    if clash:
        raise ConfigError(f"method.options: {clash} are set by method.name / method.speedup / method.channel_sparsity, "
                          "not by options")
    try:
        checked = TypeAdapter(cls).validate_python({**method.options, **fixed})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(["method.options", *(str(p) for p in err["loc"])])
        raise ConfigError(f"{key}: {cut(_message(err), 300)} (got {short(err.get('input'))})") from None
    return {k: getattr(checked, k) for k in method.options}


# ---- errors that name the file, key and line (YAML loading: shiftkit._yaml) -------------------------
def _dotted(loc: tuple) -> tuple:
    """Drop pydantic's union tag ('method', 'prune', 'sparsity' -> 'method', 'sparsity')."""
    return tuple(p for i, p in enumerate(loc) if not (i and loc[i - 1] == "method" and p in ("train", "transfer", "prune")))


def _message(err: dict) -> str:
    """pydantic's message without its "Value error, " prefix (our validators' messages are whole sentences)."""
    return str(err["msg"]).removeprefix("Value error, ")


_SECTIONS: dict[tuple, set[str]] = {  # the keys each section accepts: "did you mean" for unknown ones
    (): set(Experiment.model_fields), ("data",): set(DataConfig.model_fields), ("model",): set(ModelConfig.model_fields),
    ("budget",): set(BudgetConfig.model_fields), ("eval",): set(EvalConfig.model_fields),
    ("method",): set(TrainMethod.model_fields) | set(TransferMethod.model_fields) | set(PruneMethod.model_fields),
}


_MAX_MESSAGES = 5  # a config with a thousand bad values is one line naming the first few


def _format(e: ValidationError, where: str, text: str) -> str:
    msgs = []
    errors = e.errors()
    for err in errors[:_MAX_MESSAGES]:
        loc = _dotted(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(text, loc) if text else None
        at = f"{where}:{line}" if line else where
        if err["type"] == "extra_forbidden":
            hint = suggest(str(loc[-1]), _SECTIONS.get(tuple(loc[:-1]), ())) if loc else None
            msgs.append(f"{at}: unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        elif err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
            msgs.append(f"{at}: {key}.kind must be one of train, transfer, prune")
        else:
            msgs.append(f"{at}: {key}: {cut(_message(err), 300)} (got {short(err.get('input'))})")
    more = f" (and {len(errors) - _MAX_MESSAGES} more)" if len(errors) > _MAX_MESSAGES else ""
    return "; ".join(msgs) + more


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it: 0.5 -> float, true -> bool, [0, 1] -> list, else a string."""
    try:
        value = load_yaml(text, "command-line value")
    except ConfigError:
        return text
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 as a string; a command line means the number
    return value


def apply_overrides(raw: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Set dotted keys ("budget.epochs=1" or {"budget.epochs": 1}) in a raw config dict (copied);
    a mapping value merges into a mapping (so {"method": {"name": "magnitude"}} keeps method.sparsity)."""
    import copy

    raw = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else [split_override(o) for o in overrides]
    for key, value in items:
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.setdefault(p, {}), dict):
                raise ConfigError(f"override {key}: {p!r} is not a section")
            node = node[p]
        leaf = parts[-1]
        node[leaf] = _merge(node[leaf], value) if isinstance(node.get(leaf), dict) and isinstance(value, dict) else value
    return raw


def _merge(base: dict, update: dict) -> dict:
    """JSON merge patch (RFC 7386): a grid value {name: magnitude, options: {hybrid_split: null}} keeps the
    section's other keys and removes hybrid_split (null deletes)."""
    out = dict(base)
    for k, v in update.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def split_override(pair: str) -> tuple[str, Any]:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. budget.epochs=1), got {pair!r}")
    return key.strip(), parse_value(value)


def parse_experiment(raw: Any, *, where: str = "<config>", text: str = "") -> Experiment:
    """Validate a raw dict; errors name `where` (the file), the dotted key and its line."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an experiment is a mapping (data:, model:, method:, budget:, out:), got {type(raw).__name__}")
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, where, text)) from None
    except ConfigError as e:  # a registry name check inside a validator
        raise ConfigError(f"{where}: {e}") from None
    if not isinstance(exp.method, TrainMethod):
        try:
            method_options(exp.method)
        except ConfigError as e:
            line = line_of(text, ("method", "options")) if text else None
            raise ConfigError(f"{where}{f':{line}' if line else ''}: {e}") from None
    return exp


def load_experiment(path: str | os.PathLike, *, overrides: list[str] | dict[str, Any] = ()) -> Experiment:
    """Read and validate an experiment YAML; `overrides` set dotted keys after reading."""
    path = Path(path)
    try:
        text = read_regular(path, ConfigError, "experiment file", max_bytes=16 << 20).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: experiment file is not UTF-8 text ({e})") from None
    raw = load_yaml(text, str(path))
    raw = apply_overrides(raw or {}, overrides) if overrides else raw
    return parse_experiment(raw, where=str(path), text=text)
