"""`shiftkit bench reliability`: kill-anywhere resume, hostile checkpoints, fuzzed data, bad options,
concurrent writers — counts to benchmarks/results/reliability.json and benchmarks/RELIABILITY.md."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import bench_app, console


@bench_app.command("reliability")
def bench_reliability(kills: int = typer.Option(24, help="SIGKILLs of multi-source transfer runs (>= 20)"),
                      prune_kills: int = typer.Option(20, help="SIGKILLs of pruning sweeps"),
                      fuzz: int = typer.Option(300, help="fuzzed inputs per format (4 formats)"),
                      seed: int = typer.Option(0), work: Optional[Path] = typer.Option(None, help="keep the scratch files here"),
                      out: Path = typer.Option(Path("benchmarks/results/reliability.json")),
                      md: Path = typer.Option(Path("benchmarks/RELIABILITY.md"))):
    """Crash-safety, hostile-input and bad-option checks with their counts; data lost must be 0.

    Example: shiftkit bench reliability --kills 24 --prune-kills 20 --fuzz 300
    """
    from .bench import _results, reliability

    report = reliability.run(kills=kills, prune_kills=prune_kills, fuzz_per_format=fuzz, seed=seed, work=work,
                             log=console.print)
    report["command"] = _results.command_line()
    _results.write_result(out, report)
    reliability.write_markdown(report, md, report["command"])
    s = report["summary"]
    _results.update_section("reliability", f"## Reliability\n\n`{report['command']}` -> [RELIABILITY.md](RELIABILITY.md): "
                            f"{s['kills_survived']} kills survived, {s['hostile_files']} hostile checkpoints refused, "
                            f"{s['fuzz_inputs']} fuzzed inputs loaded or refused cleanly, {s['bad_options']} bad options "
                            "refused in one line, "
                            f"data lost = {s['data_lost']}.")
    console.print(s)
    failed = {k: v for k, v in s.items() if k in ("partial_files_accepted", "hostile_accepted", "fuzz_failures",
                                                  "bad_option_failures", "partial_reads", "data_lost") and v}
    if failed or s["code_executed"] or not s["resumes_bitwise_equal"]:
        raise typer.Exit(1)
