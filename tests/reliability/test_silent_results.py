"""A sample of issue 22's silently-wrong-result and allocation classes (harness/_silent.py) through
`python -m shiftkit`: divergence, NaN/Inf logits, a model meeting other data, out-of-range values, caps,
resume for other target data; and every decoding case in process. The whole set runs in `make reliability`."""
from harness._silent import cli_cases, make_fixtures, run_decode, run_silent

SAMPLE = {"train --lr 1e6", "eval weights x1e18", "eval c3", "prune rgb", "transfer --few-shot -5",
          "run model.kwargs.width=1e8", "eval structured input_shape huge", "transfer (the run resumed below)",
          "transfer --resume --few-shot 12"}


def test_sample_of_silent_and_cap_cases(tmp_path):
    assert SAMPLE <= {c[1] for c in cli_cases(make_fixtures(tmp_path / "names"))}
    r = run_silent(tmp_path / "run", names=SAMPLE)
    assert r["cases"] == len(SAMPLE) and r["failures"] == [], r["failures"]
    assert set(r["per_class"]) == {"diverge", "invalid", "mismatch", "ranges", "caps", "resume"}


def test_every_decoding_case(tmp_path):
    r = run_decode(tmp_path)
    assert r["cases"] >= 15 and r["failures"] == [], r["failures"]
