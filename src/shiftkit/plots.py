"""matplotlib plots (Agg backend: works without a screen)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["bar_plot", "line_plot"]


def bar_plot(values: dict[str, float], path: Path, *, title: str, ylabel: str, xlabel: str | None = None,
             chance: float | None = None, highlight: str | None = None, highlight_label: str = "") -> None:
    """Bars with their values; `chance` draws a dashed chance line, `highlight` colours one bar (e.g. the
    training bin) and names it in the legend."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * len(values)), 3.8))
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
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel, ylim=(0, 1.12))
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def line_plot(series: dict[str, tuple[list, list, list | None]], path: Path, *, title: str, xlabel: str, ylabel: str,
              logx: bool = False) -> None:
    """series: {label: (x, mean, std or None)}; std draws a shaded band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, y, err) in series.items():
        ax.plot(x, y, marker="o", label=label)
        if err is not None:
            ax.fill_between(x, [a - b for a, b in zip(y, err)], [a + b for a, b in zip(y, err)], alpha=0.2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logx:
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
