"""bench train-speed: fit() against both bare loops (contiguous, channels_last) on real code paths."""
from shiftkit.bench import train_speed


def test_train_speed_times_three_loops_and_renders_from_json(fmnist_root):
    r = train_speed.run(model="small_cnn", epochs=1, repeats=1, root=fmnist_root)
    assert set(r["seconds"]) == {"bare", "bare_channels_last", "fit"} and all(len(v) == 1 for v in r["seconds"].values())
    best_bare = min(r["seconds"]["bare"][0], r["seconds"]["bare_channels_last"][0])
    assert abs(r["ratio_fit_over_bare"] - r["seconds"]["fit"][0] / best_bare) < 1e-12  # against the faster bare loop
    section = train_speed.render_section([r], "shiftkit bench train-speed --model small_cnn")
    assert section.startswith("## Training loop overhead") and "| small_cnn |" in section
    assert "`shiftkit bench train-speed --model small_cnn`" in section
