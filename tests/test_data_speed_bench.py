"""bench data-speed: loader images/s (in memory, cached, on the fly), training steps, and the memory rows."""
import json

from shiftkit.bench import data_speed


def test_data_speed_measures_every_loader_and_renders_from_json(tmp_path):
    r = data_speed.run(images=24, memory_images=48, sizes=(16,), batch_size=8, workers=1, work=str(tmp_path))
    assert not list(tmp_path.iterdir())  # scratch folder (images, caches) removed
    (row,) = r["loader"]
    keys = {"in_memory", "cached", "on_the_fly", "decode_into_memory", "cache_build"}
    assert row["size"] == 16 and row["images"] == 24 and all(row[k] > 0 for k in keys)
    assert set(row["train_step"]) == {"resnet20", "resnet50"} and all(v > 0 for v in row["train_step"].values())
    assert [m["storage"] for m in r["memory"]] == ["memory", "cache"]
    for m in r["memory"]:  # measured in a fresh process each: RssAnon peaks of the 48-image and the 40-image runs
        assert m["images"] == 48 and m["decoded_bytes"] == 48 * 3 * 224 * 224
        assert m["fraction_of_decoded"] == m["peak_rss_anon_above_empty"] / m["decoded_bytes"]
    section = data_speed.render_section(json.loads(json.dumps(r)), "shiftkit bench data-speed --images 24")
    assert section.startswith("## Data loading") and "| 16 | 24 |" in section and "| cache | 48 |" in section
