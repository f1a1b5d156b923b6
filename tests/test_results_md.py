"""benchmarks/RESULTS.md regenerates byte for byte from the stored JSON under benchmarks/results/.

Every benchmark section that has a report-only path is rebuilt the way a user rebuilds it: the command that
ran the benchmark (stored in its summary JSON) with `--report-only`, in a copy of benchmarks/ with the PNGs
left out. `bench prune-bn` has no such flag; it resumes, so with every run cached it only re-renders.
The train-speed and reliability sections are written by their benchmark runs alone (no stored-JSON path)
and are carried over unchanged by the section update.
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch

from shiftkit.cli import main

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _stored_commands(results: Path) -> list[list[str]]:
    """argv (without the program) of every re-renderable benchmark, in the order RESULTS.md shows them."""
    argvs = []
    for f in sorted(results.glob("prune_shift_*.json")):
        argvs.append(shlex.split(json.loads(f.read_text())["command"])[1:] + ["--report-only"])
    for f in sorted(results.glob("prune_bn_*.json")):
        argvs.append(shlex.split(json.loads(f.read_text())["command"])[1:])
    for f in sorted(results.glob("prune_structured_*.json")):
        if "latency" in f.name:
            continue
        config = json.loads(f.read_text())["config"]
        base = config["base"]
        width = [a for k, v in base["model_kwargs"] if k == "width" for a in ("--width", str(v))]
        scope = ["--scope", config["scope"]] if config.get("scope", "global") != "global" else []
        argvs.append(["bench", "prune-structured", "--model", base["model"], *width, *scope, "--report-only"])
    merge_prune = results / "merge_prune.json"
    if merge_prune.is_file():
        argvs.append(shlex.split(json.loads(merge_prune.read_text())["command"])[1:] + ["--report-only"])
    data_speed = results / "data_speed.json"
    if data_speed.is_file():
        argvs.append(shlex.split(json.loads(data_speed.read_text())["command"])[1:] + ["--report-only"])
    return argvs + [["bench", "transfer", "--report-only"]]


@pytest.fixture
def bench_copy(tmp_path, monkeypatch):
    """benchmarks/ without images, as the working directory (the benchmarks write benchmarks/RESULTS.md)."""
    shutil.copytree(BENCH, tmp_path / "benchmarks", ignore=shutil.ignore_patterns("*.png", "*.lock"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yield tmp_path / "benchmarks"
    torch.set_num_threads(threads)  # prune-bn sets one thread for its (here empty) run loop


def test_results_md_regenerates_byte_identically(bench_copy, monkeypatch):
    argvs = _stored_commands(bench_copy / "results")
    assert len(argvs) >= 3, "expected stored prune, prune-bn and transfer results"
    md = bench_copy / "RESULTS.md"
    structured = tuple(f"prune_structured_{p.stem.removeprefix('prune_structured_')}"
                       for p in (bench_copy / "results").glob("prune_structured_*.json") if "latency" not in p.name)
    merge_prune = ("merge_prune",) if (bench_copy / "results" / "merge_prune.json").is_file() else ()
    data_speed = ("data-speed",) if (bench_copy / "results" / "data_speed.json").is_file() else ()
    md.write_text(_emptied(md.read_text(), ("prune", "transfer", *structured, *merge_prune, *data_speed)))  # rebuilt, not left in place
    before = {p.name: p.stat().st_mtime_ns for p in (bench_copy / "results").glob("*.jsonl")}
    for argv in argvs:
        monkeypatch.setattr(sys, "argv", ["shiftkit", *argv])  # the command the tables name
        main(argv)
    regenerated = (bench_copy / "RESULTS.md").read_bytes()
    assert regenerated == (BENCH / "RESULTS.md").read_bytes(), _first_difference(regenerated, BENCH / "RESULTS.md")
    # nothing re-ran: the run logs are untouched, and the report-only paths drew their plots again
    assert before == {p.name: p.stat().st_mtime_ns for p in (bench_copy / "results").glob("*.jsonl")}
    assert list((bench_copy / "plots").glob("transfer_curve_*.png")) and list((bench_copy / "results").glob("prune_*_shift.png"))


def _emptied(text: str, sections: tuple[str, ...]) -> str:
    """The text with the bodies of these marked sections removed (the markers stay, so their place is kept)."""
    for name in sections:
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + end + rest.split(end, 1)[1]
    return text


def _first_difference(new: bytes, committed: Path) -> str:
    for n, (a, b) in enumerate(zip(new.decode().splitlines(), committed.read_text().splitlines()), 1):
        if a != b:
            return f"{committed} line {n} differs:\n  committed:   {b}\n  regenerated: {a}"
    return f"{committed}: lengths differ ({len(new)} regenerated vs {committed.stat().st_size} committed bytes)"
