"""What every command module shares: the console, safe printing, tables, command-line flags -> an
`Experiment`, and the entry point's error handling. The bottom layer of `shiftkit.cli`: it imports no
command module. Heavy imports (torch, pydantic) stay inside functions so `--help` stays fast.

Untrusted text (file paths, checkpoint metadata, tensor names) is printed only through `say`, `table`
and `json_line`: never parsed as rich markup, never pretty-printed recursively.
"""
from __future__ import annotations

import json
import reprlib
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError, ShiftkitError

if TYPE_CHECKING:
    from ..config import Experiment

# soft_wrap: a long line stays one line in a pipe (no hard breaks at 80 columns)
console = Console(soft_wrap=True, highlight=False)
_PIPE_WIDTH = 10_000  # off a terminal a table takes its natural width: never cut, never wrapped
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 4, 200, 200


# ---- printing -----------------------------------------------------------------------------------------
def plain(value: Any, limit: int | None = None) -> str:
    """Any value as plain text: strings as they are, the rest as JSON, or - where JSON
    would recurse too deep or cannot encode it - a depth-bounded repr. Cut to `limit` characters."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (RecursionError, ValueError, TypeError):  # nested beyond the encoder's depth, or circular
            text = _repr.repr(value)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def say(*parts: Any) -> None:
    """Print text that may contain user data ([/bold], [red] ...): literally, never as rich markup."""
    console.print(Text(" ".join(plain(p) for p in parts)), width=None if console.is_terminal else _PIPE_WIDTH)


def json_line(obj: Any) -> None:
    """Machine-readable output: one JSON line on stdout, never wrapped or styled."""
    try:
        text = json.dumps(obj, default=str)
    except RecursionError:
        raise ConfigError("the output is nested too deeply to print as JSON") from None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def table(rows: list[dict], title: str = "") -> None:
    """A rich table of rows (same keys); every cell and the title are literal text."""
    if not rows:
        return
    t = Table(title=Text(plain(title)) if title else None)
    for k in rows[0]:
        t.add_column(Text(plain(k)))
    for r in rows:
        t.add_row(*[Text(f"{v:.4f}" if isinstance(v, float) else plain(v)) for v in r.values()])
    console.print(t, width=None if console.is_terminal else _PIPE_WIDTH)


def print_registry(registry: Any) -> None:
    """`name  one-line description` per registered name, plain text (grep- and pipe-friendly)."""
    names = registry.names()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {registry.describe(name)}".rstrip())


# ---- the device flags every command that runs a model shares ---------------------------------------------
def device_option() -> Any:
    return typer.Option(None, help="auto | cpu | cuda | cuda:N | mps (default auto: CUDA, else MPS, else CPU)")


def precision_option() -> Any:
    return typer.Option(None, help="fp32 (default) | bf16 | fp16: autocast of training passes; decisions stay fp32")


# ---- command-line flags -> config keys ----------------------------------------------------------------
# One table for every experiment flag of `shiftkit train / prune / transfer / sources`; `shiftkit run`
# accepts the same flags. A flag may set several keys; COMMAND_FLAGS holds where a command's flag
# means something else (train's --out is the model file, its --seed also seeds the data).
FLAG_KEYS: dict[str, tuple[str, ...]] = {
    "dataset": ("data.name",), "root": ("data.root",), "domain": ("data.domain",), "target": ("data.target",),
    "few_shot": ("data.few_shot",), "calib_domain": ("data.calib_domain",),
    "model": ("model.name",), "width": ("model.kwargs.width",),
    "method": ("method.name",), "sparsity": ("method.sparsity",), "steps": ("method.steps",),
    "bn_recalibrate": ("method.bn_recalibrate",), "structured": ("method.structured",),
    "speedup": ("method.speedup",), "channel_sparsity": ("method.channel_sparsity",),
    "sources": ("method.zoo",), "zoo": ("method.zoo",), "base": ("method.base",), "order": ("method.order",),
    "dense_epochs": ("method.dense_epochs",), "resume": ("method.resume",),
    "base_domain": ("method.base_domain",), "base_epochs": ("method.base_epochs",),
    "source_epochs": ("method.source_epochs",), "base_lr": ("method.base_lr",), "source_lr": ("method.source_lr",),
    "zoo_batch_size": ("method.zoo_batch_size",), "checkpoint": ("method.checkpoint",),
    "tau": ("method.options.tau",), "scope": ("method.options.scope",), "hybrid_split": ("method.options.hybrid_split",),
    "reading": ("method.options.reading",), "combine": ("method.options.combine",), "inverse": ("method.options.inverse",),
    "granularity": ("method.options.granularity",), "calib_per_class": ("method.options.calib_per_class",),
    "keep_first": ("method.options.keep_first",), "keep_last": ("method.options.keep_last",),
    "max_layer_sparsity": ("method.options.max_layer_sparsity",),
    "skip_unsupported": ("method.options.skip_unsupported",),
    "epochs": ("budget.epochs",), "finetune_epochs": ("budget.epochs",), "lr": ("budget.lr",),
    "batch_size": ("budget.batch_size",), "seed": ("seed",), "out": ("out",), "save": ("save",),
    "corruptions": ("eval.corruptions",), "device": ("device",), "precision": ("precision",),
    "augment": ("data.augment",), "init": ("method.init",),
}
COMMAND_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"seed": ("seed", "data.seed"), "out": ("save",)},
    "prune": {"seed": ("seed", "data.seed"), "out": ("save",)},
    "transfer": {"set_": ("method.options",)},   # its --set takes method options: tau=0.5
    "sources": {"out": ("method.zoo",)},
}
BOOL_FLAGS = {"resume", "bn_recalibrate", "combine", "inverse", "keep_first", "keep_last", "skip_unsupported", "corruptions"}
_KINDS = {"train": "train", "prune": "prune", "transfer": "transfer", "sources": "transfer"}


def flag_keys(command: str | None = None) -> dict[str, tuple[str, ...]]:
    """{flag (python name): config keys} for `shiftkit <command>` (None: `shiftkit run`)."""
    return {**FLAG_KEYS, **COMMAND_FLAGS.get(command or "", {})}


def from_flags(command: str, **params: Any) -> Experiment:
    """The experiment a `shiftkit train / prune / transfer / sources` command line describes
    (None values = the flag was not given)."""
    from ..config import apply_overrides, parse_experiment, split_override

    keys = flag_keys(command)
    raw: dict[str, Any] = {"method": {"kind": _KINDS[command]}}
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise ConfigError(f"shiftkit {command}: flags {unknown} have no config key")
    for flag, value in params.items():
        if value is None or (flag == "set_" and not value):
            continue
        if flag == "set_":
            value = dict(split_override(pair) for pair in value)
        value = str(value) if isinstance(value, Path) else value
        raw = apply_overrides(raw, {k: value for k in keys[flag]})
    if raw.get("save") and "out" not in raw:  # a model file: results beside it
        raw["out"] = results_folder(raw["save"])
    return parse_experiment(raw, where=f"shiftkit {command}")


def results_folder(model_file: str | Path) -> str:
    """The results folder of a model file given as --out: `d/m.safetensors` -> `d/m` (as always); any other
    name keeps its whole name plus `.results`, so `d/m.v1` and `d/m.v2` never share a folder and `d/model`
    is never its own results folder."""
    p = Path(model_file)
    return str(p.with_suffix("")) if p.suffix == ".safetensors" else f"{p}.results"


def flag_overrides(args: list[str]) -> dict[str, Any]:
    """["--epochs", "1", "--keep-first", "--set", "k=v"] -> {dotted key: value}; unknown flags -> ConfigError."""
    from ..config import parse_value, split_override

    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; flags look like --epochs 1 or --set budget.epochs=1")
        name, eq, value = arg[2:].partition("=")
        neg = name.startswith("no-") and name[3:].replace("-", "_") in BOOL_FLAGS
        flag = (name[3:] if neg else name).replace("-", "_")
        if flag == "set":
            value, i = (value, i) if eq else (args[i + 1] if i + 1 < len(args) else "", i + 1)
            out.update([split_override(value)])
        elif flag not in FLAG_KEYS:
            raise ConfigError(f"unknown flag --{name}{did_you_mean(flag, FLAG_KEYS, prefix='--')}; "
                              f"valid: --set, {', '.join('--' + f.replace('_', '-') for f in sorted(FLAG_KEYS))}")
        else:
            if flag in BOOL_FLAGS and not eq:
                parsed = not neg
            else:
                if not eq:
                    if i + 1 >= len(args):
                        raise ConfigError(f"flag --{name} needs a value")
                    value, i = args[i + 1], i + 1
                parsed = parse_value(value)
            out.update({key: parsed for key in FLAG_KEYS[flag]})
        i += 1
    return out


def did_you_mean(name: str, valid, *, prefix: str = "") -> str:
    """' (did you mean --epochs?)' for the closest valid name, '' when none is close."""
    from ..errors import suggest

    hit = suggest(name, valid)
    return f" (did you mean {prefix}{hit.replace('_', '-') if prefix else hit}?)" if hit else ""


# ---- the entry point's error handling ---------------------------------------------------------------------
def one_line(text: Any) -> str:
    return " ".join(str(text).split())


def run_app(app: Callable[..., Any], argv: list[str] | None) -> None:
    """Run the typer app: ShiftkitError and usage errors -> one readable line on stderr, exit code 2;
    warnings print as one line each."""
    fmt = warnings.formatwarning
    warnings.formatwarning = lambda msg, cat, *_a, **_k: f"shiftkit: warning: {one_line(msg)} ({cat.__name__})\n"
    try:
        _run(app, argv)
    finally:
        warnings.formatwarning = fmt


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def _run(app: Callable[..., Any], argv: list[str] | None) -> None:
    try:
        code = app(args=argv, standalone_mode=False)
    except KeyboardInterrupt:  # outside typer's own handler (which returns 130, below)
        code = EXIT_INTERRUPTED
    except ShiftkitError as e:
        print(f"shiftkit: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        import click

        # typer >= 0.24 vendors click: its usage errors are typer.TyperException, not click's
        if isinstance(e, (click.exceptions.ClickException, typer.TyperException)) and hasattr(e, "exit_code"):
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(f"shiftkit: error: {one_line(e.format_message())}{hint}", file=sys.stderr)
            sys.exit(e.exit_code)
        if isinstance(e, (click.exceptions.Abort, typer.Abort)):
            sys.exit(1)
        raise
    if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into a returned 130: `shiftkit train && next` must stop
        print("shiftkit: interrupted", file=sys.stderr)
    if isinstance(code, int) and code:
        sys.exit(code)
