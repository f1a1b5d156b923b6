"""Markdown tables and matplotlib figures (Agg backend: works without a screen), for every report.

Every figure goes through `figure` (same size rules, tight layout, dpi, closed after saving) and every
title through `set_title`, which wraps it to the width of its axes so no title is clipped.
"""
from __future__ import annotations

import io
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["markdown_table", "figure", "set_title", "draw_lines", "line_plot", "bar_plot", "plt"]

Series = dict[str, tuple[list, list, "list | None"]]  # {label: (x, mean, std or None)}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


@contextmanager
def figure(path: Path, *, ncols: int = 1, size: tuple[float, float] = (6, 4), **subplots) -> Iterator[list]:
    """One row of `ncols` axes, saved to `path` at 120 dpi when the block ends: rendered in memory, then
    written atomically (never through a symlink, into a FIFO or over a device or folder named like the plot).
    Not claimed: benchmark plots are shared files, like the tables they sit beside."""
    from .checkpoints import atomic_write

    fig, axes = plt.subplots(1, ncols, figsize=size, squeeze=False, **subplots)
    try:
        yield list(axes[0])
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
        atomic_write(path, buf.getvalue(), claim=False)
    finally:
        plt.close(fig)


def set_title(ax, text: str, fontsize: float = 9) -> None:
    """A title wrapped to the axes' width (about 0.55 em per character), so it never runs off the figure."""
    fig = ax.get_figure()
    width_in = ax.get_position().width * fig.get_figwidth()
    ax.set_title(textwrap.fill(text, max(20, int(width_in * 72 / (0.55 * fontsize)))), fontsize=fontsize)


def draw_lines(ax, series: Series, *, title: str, xlabel: str, ylabel: str, logx: bool = False,
               y_from_zero: bool = False) -> None:
    """One line per series, its std (when given) as a shaded band; log2 x axis ticked at the data's x."""
    markers, linestyles = ("o", "s", "^", "D", "v", "x"), ("-", "--", ":", "-.")
    for i, (label, (x, y, err)) in enumerate(series.items()):
        marker, linestyle = markers[i % 6], linestyles[i % 4]  # lines that coincide stay visible
        ax.plot(x, y, marker=marker, linestyle=linestyle, markersize=5, alpha=0.85, label=label)
        if err is not None:
            ax.fill_between(x, [a - b for a, b in zip(y, err)], [a + b for a, b in zip(y, err)], alpha=0.2)
    set_title(ax, title)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if logx:
        ticks = sorted({v for x, _, _ in series.values() for v in x})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    if y_from_zero:  # amounts (memory, counts): a cut axis would exaggerate small differences
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)


def line_plot(series: Series, path: Path, *, title: str, xlabel: str, ylabel: str, logx: bool = False,
              y_from_zero: bool = False) -> None:
    """series: {label: (x, mean, std or None)}; std draws a shaded band."""
    with figure(path) as (ax,):
        draw_lines(ax, series, title=title, xlabel=xlabel, ylabel=ylabel, logx=logx, y_from_zero=y_from_zero)


def bar_plot(values: dict[str, float], path: Path, *, title: str, ylabel: str, xlabel: str | None = None,
             chance: float | None = None, highlight: str | None = None, highlight_label: str = "") -> None:
    """Bars with their values; `chance` draws a dashed chance line, `highlight` colours one bar (e.g. the
    training bin) and names it in the legend."""
    with figure(path, size=(max(4.5, 0.7 * len(values)), 3.8)) as (ax,):
        colors = ["#DD8452" if k == highlight else "#4C72B0" for k in values]
        bars = ax.bar(list(values), list(values.values()), color=colors)
        for i, v in enumerate(values.values()):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        if highlight in values:
            bars[list(values).index(highlight)].set_label(highlight_label or highlight)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
        if highlight in values or chance is not None:
            ax.legend(fontsize=7, loc="upper right")
        set_title(ax, title)
        ax.set(ylabel=ylabel, xlabel=xlabel, ylim=(0, 1.12))
