"""Every command's --help shows an `Example:` line, and that example parses against the command itself."""
from __future__ import annotations

import shlex

import pytest
import typer

from shiftkit.cli import app, main
from shiftkit.cli._common import flag_overrides


def _commands(group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_shows_a_working_example(path, cmd, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # no wrapping: the example is one copyable line
    main([*path, "--help"])
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("Example: shiftkit ")]
    assert lines, f"`shiftkit {' '.join(path)} --help` has no 'Example: shiftkit ...' line"
    argv = shlex.split(lines[0].removeprefix("Example: "))
    assert argv[1:1 + len(path)] == list(path), f"example runs another command: {lines[0]}"
    ctx = cmd.make_context(path[-1], argv[1 + len(path):])  # raises on unknown options / bad values
    if ctx.args:  # run / sweep forward the experiment flags to the config
        flag_overrides(ctx.args)
