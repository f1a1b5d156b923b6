"""`--version`, one-line descriptions in `models` / `transfer-methods`, and `--help` / usage errors that
import only what they need (no torch: the heavy part of a command's start)."""
from __future__ import annotations

import subprocess
import sys

import pytest

import shiftkit
from shiftkit import models, transfer
from shiftkit.cli import main


def test_version(capsys):
    main(["--version"])
    assert capsys.readouterr().out == f"shiftkit {shiftkit.__version__}\n"
    p = subprocess.run([sys.executable, "-m", "shiftkit", "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == f"shiftkit {shiftkit.__version__}\n"


@pytest.mark.parametrize("command, registry", [("models", models.MODELS), ("transfer-methods", transfer.TRANSFER)])
def test_listings_describe_every_name_in_one_line(command, registry, capsys):
    main([command])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == registry.names()
    for line, name in zip(lines, registry.names()):
        description = line[len(name):].strip()
        assert description and description == registry.describe(name), line
    assert len(set(lines)) == len(lines)


def test_descriptions_say_what_an_entry_is():
    assert transfer.TRANSFER.describe("target_only").startswith("Target-only baseline")
    assert "tau" in transfer.TRANSFER.describe("sequential_all")  # a configured variant names its setting
    assert "BatchNorm" in models.MODELS.describe("vgg11_bn") and "BatchNorm" not in models.MODELS.describe("vgg11")


PROBE = """
import sys
from shiftkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "numpy", "timm", "safetensors", "shiftkit.data", "shiftkit.config") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["bench", "prune", "--help"], ["train", "--epochz", "1"]])
def test_help_and_usage_errors_import_no_torch(argv):
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True)
    assert "HEAVY []" in p.stderr, p.stderr
