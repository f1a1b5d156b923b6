"""Progress bars on the long steps (source training, absorb, fine-tune, calibration, sweep), shown on a
terminal; off a terminal (a pipe, a log file, CI) no bar but one line per epoch."""
from __future__ import annotations

import io
import sys

import pytest

from shiftkit.config import parse_experiment
from shiftkit.experiment import run_experiment
from shiftkit.sweep import expand_grid, run_grid


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _capture(monkeypatch, tty: bool, fn) -> str:
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    fn()
    return stream.getvalue()


TRANSFER = {"data": {"target": 7, "few_shot": 30}, "model": {"kwargs": {"width": 8}},
            "method": {"kind": "transfer", "name": "grasp", "base_epochs": 1, "source_epochs": 1},
            "budget": {"epochs": 1}, "eval": {"domains": False}}


@pytest.mark.parametrize("tty", [True, False])
def test_bars_on_a_terminal_only(ux_env, trained, monkeypatch, tty):
    transfer = lambda: run_experiment(parse_experiment({**TRANSFER, "out": f"runs/t{tty}"}))  # noqa: E731
    prune_raw = {"method": {"kind": "prune", "name": "gcnet", "sparsity": 0.5, "checkpoint": trained["checkpoint"],
                            "options": {"calib_per_class": 2}}, "budget": {"epochs": 1}, "eval": {"domains": False},
                 "out": f"runs/p{tty}", "grid": {"seed": [0]}}
    sweep = lambda: run_grid(expand_grid(parse_experiment(prune_raw)))  # noqa: E731
    err = _capture(monkeypatch, tty, transfer) + _capture(monkeypatch, tty, sweep)
    steps = ("fit", "absorb (Grasp)", "calibration", "sweep")  # transfer.run_sources names the merger class
    if tty:
        assert all(f"{s}:" in err for s in steps), err[-2000:]
    else:
        assert "it/s" not in err and "\r" not in err  # no bar drawn into a log
        assert "fit: epoch 1/1 train_loss" in err and "sweep: point 1/1 done" in err  # but a line per epoch / point
        assert "absorb (Grasp): source 1/" in err  # and per absorbed source


def test_bar_drawn_on_a_terminal_that_reports_no_size(monkeypatch):
    """A pty opened without a size (under `script`, some CI runners) reports 0 x 0; tqdm would hide the bar."""
    import os

    from shiftkit.progress import Progress

    stream = _Stream(True)
    stream.fileno = lambda: 2
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    with Progress(total=4, desc="work") as p:
        p.update(4)
        p.milestone("stage 1/1")
    assert "work: 100%" in stream.getvalue() and "stage 1/1" in stream.getvalue()
