"""`python -m tests.reliability.harness` (or `make reliability`): every reliability check with its counts,
to benchmarks/results/reliability.json and benchmarks/RELIABILITY.md. Exit 1 if any check failed.

    python -m tests.reliability.harness --kills 24 --prune-kills 20 --fuzz 300
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from shiftkit.bench import _results

from . import reliability


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.harness", description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=24, help="SIGKILLs of multi-source transfer runs (>= 20)")
    p.add_argument("--prune-kills", type=int, default=20, help="SIGKILLs of pruning sweeps")
    p.add_argument("--fuzz", type=int, default=300, help="fuzzed inputs per format")
    p.add_argument("--hostile-cli", type=int, default=3, help="hostile checkpoints per kind through the CLI")
    p.add_argument("--jobs", type=int, default=2, help="CLI checks run at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="keep the scratch files here")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/reliability.json"))
    p.add_argument("--md", type=Path, default=Path("benchmarks/RELIABILITY.md"))
    args = p.parse_args(argv)
    command = " ".join(["python -m tests.reliability.harness", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    report = reliability.run(kills=args.kills, prune_kills=args.prune_kills, fuzz_per_format=args.fuzz,
                             hostile_cli_per_kind=args.hostile_cli, jobs=args.jobs, seed=args.seed, work=args.work)
    report["command"] = command
    _results.write_result(args.out, report)
    reliability.write_markdown(report, args.md, command)
    s = report["summary"]
    _results.update_section("reliability", f"## Reliability\n\n`{command}` (`make reliability`) -> "
                            f"[RELIABILITY.md](RELIABILITY.md): {s['kills_survived']} kills survived, "
                            f"{s['hostile_files']} hostile checkpoints refused, {s['class_inputs']} hostile inputs of "
                            f"issue 13's classes in {s['class_checks']} CLI checks ({s['class_failures']} failed), "
                            f"{s['fuzz_inputs']} fuzzed inputs loaded or refused cleanly, {s['bad_options']} bad "
                            f"options refused in one line, data lost = {s['data_lost']}.")
    print({k: v for k, v in s.items()})
    return 1 if reliability.failed(s) else 0


if __name__ == "__main__":
    sys.exit(main())
