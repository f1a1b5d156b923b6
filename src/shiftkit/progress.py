"""Feedback on long work, one mechanism for every loop: a tqdm bar on a terminal, a plain line per
milestone (epoch, stage, sweep point) everywhere else (logs, CI, pipes, notebooks' captured stderr).

    with Progress(total=steps, desc="fit") as p:
        for ...:
            p.update()                      # a bar tick on a terminal; nothing off one
        p.milestone("epoch 1/3 loss 0.41")  # the bar's postfix on a terminal; one stderr line off one
"""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress"]


def _terminal_size() -> dict[str, int]:
    """tqdm's ncols / nrows, 80 x 24 where the terminal reports 0 x 0 (a pty opened without a size, e.g.
    under `script` or some CI runners), on which tqdm would hide the bar entirely."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return {}
    return {"ncols": size.columns or 80, "nrows": size.lines or 24}


class Progress:
    """A progress bar that degrades to milestone lines when stderr is not a terminal."""

    def __init__(self, total: int | None = None, desc: str = "", *, enabled: bool = True, leave: bool = False) -> None:
        self.desc, self.enabled = desc, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, leave=leave, disable=not self.tty, **(_terminal_size() if self.tty else {}))

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def milestone(self, message: str) -> None:
        """A unit of work is done: shown on the bar, or printed as `desc: message` off a terminal."""
        if self.tty:
            self.bar.set_postfix_str(message)
        elif self.enabled:
            print(f"{self.desc}: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
