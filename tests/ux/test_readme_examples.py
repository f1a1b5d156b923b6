"""The README's "Using it" examples, executed in order on the tiny IDX fixture (epochs cut to 1).

`.venv/bin/shiftkit ...` lines run in-process through the same entry point as the console script
(`shiftkit.cli.main`); python blocks run with exec, in a fresh folder that sees examples/.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from shiftkit.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def using_it_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text.split("\n## Using it", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


def _cheap(code: str) -> str:
    """Cut training budgets for the tiny fixture."""
    return re.sub(r"epochs=\d+", "epochs=1", re.sub(r"--epochs \d+", "--epochs 1", code))


def test_readme_has_examples_of_every_new_command():
    code = "\n".join(c for _, c in using_it_blocks())
    for command in ("run", "sweep", "report", "inspect", "export", "import", "train", "prune"):
        assert f"shiftkit {command} " in code, command
    assert "make demo" in README.read_text() and "make test" in README.read_text()


def test_readme_examples_run(ux_env, capsys):
    (ux_env / "runs").mkdir()
    for lang, code in using_it_blocks():
        code = _cheap(code)
        if lang == "python":
            exec(compile(code, f"README.md python block:\n{code}", "exec"), {"__name__": "__readme__"})
            continue
        for line in code.splitlines():
            argv = shlex.split(line, comments=True)
            if not argv:
                continue
            if argv[0] == ".venv/bin/shiftkit":
                main(argv[1:])  # raises SystemExit on a user error: the example is broken
            else:
                subprocess.run(line, shell=True, check=True, cwd=ux_env)
    out = capsys.readouterr().out
    assert "resnet20" in out and "weight sparsity" in out
    assert Path("runs/exp/result.json").is_file() and Path("runs/grasp/result.json").is_file()
    assert Path("runs/sweep/report.md").is_file() and Path("runs/prune/prune_accuracy_vs_sparsity.png").is_file()
    assert Path("runs/r50_plain.safetensors").is_file()
