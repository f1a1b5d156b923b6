"""Several processes writing one RESULTS.md (update_section) and one JSON result (write_result) at
once, with a reader watching: no section lost, no partial file ever visible, no temp file left."""
from harness._concurrency import concurrent_writers


def test_concurrent_benchmark_writers_lose_nothing(tmp_path):
    report = concurrent_writers(tmp_path, writers=4, rounds=20)
    assert report["writer_exit_codes"] == [0, 0, 0, 0]
    assert report["sections_lost"] == [] and report["json_ok"]
    assert report["partial_reads"] == [] and report["reads_checked"] > 0
    assert report["temp_files_left"] == []
