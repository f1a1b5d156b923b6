"""A sample of issue 22's output and input classes (harness/_outputs.py) through `python -m shiftkit`: special
files and symlinked locks as outputs, clashing outputs, hostile YAML, a huge grid; then the whole-run cases (Ctrl-C, a
full disk, stale files of a killed save, a hostile report folder, sweep folders). The whole set runs
in `make reliability`."""
from harness._outputs import CASES, run_outputs

SAMPLE = {"export --out fifo", "train --out device", "lock file: symlink", "clash: same path", "clash: name too long",
          "alias bomb", "duplicate key", "27 million points"}


def test_sample_of_output_and_input_cases(tmp_path):
    assert SAMPLE <= {name for _, name, _ in CASES}
    r = run_outputs(tmp_path, names=SAMPLE, extras=False)
    assert r["cases"] == len(SAMPLE) and r["failures"] == [], r["failures"]
    assert all(line.startswith("shiftkit: error: ") for line in r["stderr"].values())


def test_whole_run_cases(tmp_path):
    r = run_outputs(tmp_path, names=set(), extras=True)
    assert r["per_class"].keys() == {"report", "interrupt", "sweep folders", "full disk", "stale files", "outputs"}
    assert r["failures"] == [], r["failures"]
