"""Bad options from the API (ConfigError / CheckpointError) and the CLI (exit code != 0, exactly one
readable stderr line, no traceback): τ outside [-1, 1], sparsity outside [0, 1), no sources, sources
of another arch / class count / width, unknown names, damaged manifests and checkpoint metadata."""
import pytest
import torch

from harness._badopts import make_fixtures, run_api_cases, run_cli_case, run_cli_cases


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    torch.set_num_threads(1)
    return make_fixtures(tmp_path_factory.mktemp("badopts"))


def test_api_rejects_every_bad_option(fixtures):
    report = run_api_cases(fixtures)
    assert report["cases"] >= 30
    assert report["failures"] == []


# A sample through `python -m shiftkit` (a fresh interpreter per case, as a user runs it); every case
# runs in the harness (`make reliability`).
SAMPLE = {"transfer target out of range", "eval checkpoint with garbage config", "transfer zoo manifest not JSON",
          "transfer tau=abc", "import code-carrying .pt", "transfer tau=1.5"}


def test_cli_rejects_bad_options_in_one_line(fixtures):
    report = run_cli_cases(fixtures, runner=lambda argv: run_cli_case(argv, cwd=fixtures["out"].parent), names=SAMPLE)
    assert report["cases"] == len(SAMPLE)
    assert report["failures"] == []
    assert all(line.startswith("shiftkit: error: ") for line in report["stderr"].values())
    # regressions: these printed a traceback (IndexError, JSONDecodeError, typer's vendored click errors)
    assert "out of range" in report["stderr"]["transfer target out of range"]
    assert "bad_meta.safetensors" in report["stderr"]["eval checkpoint with garbage config"]
    assert "zoo.json" in report["stderr"]["transfer zoo manifest not JSON"]
    assert "--tau" in report["stderr"]["transfer tau=abc"]
    # a refused pickle names the blocked global, not torch's advice to retry with weights_only=False
    assert "GLOBAL" in report["stderr"]["import code-carrying .pt"]
    assert "weights_only` set to `False" not in report["stderr"]["import code-carrying .pt"]


@pytest.mark.parametrize("name", ["train unknown option", "unknown command"])
def test_real_entry_point_one_line(fixtures, name):
    """The same through `python -m shiftkit` (interpreter, __main__, exit code)."""
    report = run_cli_cases(fixtures, runner=lambda argv: run_cli_case(argv, cwd=fixtures["out"].parent), names={name})
    assert report["cases"] == 1 and report["failures"] == []
