"""Kill-anywhere resume: SIGKILL a transfer child inside absorb, fine-tuning and checkpoint writing,
resume, and get the uninterrupted run's weights bit for bit; damaged run states are refused.
The full count (>= 20 kills) runs in `shiftkit bench reliability`."""
import json
import shutil

import pytest
import torch

from shiftkit import transfer
from harness._crash import TRANSFER_CFG, crash_campaign
from harness._crash_prune import prune_campaign
from shiftkit.bench._results import append_jsonl, read_jsonl
from harness._tiny import tiny_domains, tiny_net, tiny_zoo
from shiftkit.checkpoints import save_checkpoint
from shiftkit.errors import CheckpointError, DataError

CFG = {**TRANSFER_CFG, "initial_epochs": 1, "finetune_epochs": 1}


def test_sigkill_anywhere_then_resume_is_bitwise_equal(tmp_path, zygote):
    report = crash_campaign(tmp_path, kills=4, seed=5, k=4, methods=("grasp", "task_arithmetic"),
                            max_kills_per_run=3, log=lambda _: None, zygote=zygote)
    assert report["kills"] >= 4
    assert all(report["kills_by_phase"][p] >= 1 for p in ("absorb", "finetune", "write"))
    assert report["all_bitwise_equal"] and report["all_logs_equal"]
    assert report["partial_files_accepted"] == 0 and report["problems"] == []
    assert report["absorbs_lost"] == 0


def test_sigkill_pruning_sweep_then_resume_gives_the_same_records(tmp_path, zygote):
    report = prune_campaign(tmp_path, zygote, kills=3, seed=1, log=lambda _: None)
    assert report["kills"] >= 3 and report["kills_by_phase"]["write"] >= 1
    assert report["all_records_equal"] and report["records_lost"] == 0
    assert report["partial_files_accepted"] == 0 and report["problems"] == []


def test_torn_jsonl_tail_is_dropped_and_appends_start_clean(tmp_path):
    """A sweep killed mid-append left a torn last line that made the resumed sweep crash (JSONDecodeError)."""
    path = tmp_path / "runs.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "ab") as f:
        f.write(b'{"a": 2, "b": [1, 2')  # the kill
    assert read_jsonl(path) == [{"a": 1}]
    append_jsonl(path, {"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(DataError, match="line 2"):
        read_jsonl(path)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_zoo(tmp_path_factory.mktemp("zoo"), 4)


def _run(run_dir, sources, **kw):
    m = transfer.create("grasp", tiny_net(0), tiny_domains(4)[-1], run_dir=run_dir, **{**CFG, **kw})
    return m, transfer.run_sources(m, [str(s) for s in sources], resume=True)


def test_leftover_temp_files_are_ignored(tmp_path, zoo):
    _, sources = zoo
    _, ref = _run(tmp_path / "ref", sources)
    _run(tmp_path / "run", sources[:1])
    state = (tmp_path / "run" / "state.safetensors").read_bytes()
    (tmp_path / "run" / ".state.safetensors.abc123.tmp").write_bytes(state[: len(state) // 3])  # a killed write
    (tmp_path / "run" / ".log.json.def456.tmp").write_bytes(b'{"records": [')
    _, out = _run(tmp_path / "run", sources)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), out.state_dict().values()))


@pytest.mark.parametrize("damage", ["truncated", "empty", "no_log", "log_not_json", "log_not_dict", "no_records"])
def test_damaged_run_state_is_refused_not_accepted(tmp_path, zoo, damage):
    """A run dir whose state file is partial or not a transfer state: CheckpointError naming it
    (no_log / log_not_json / log_not_dict / no_records used to escape as KeyError, JSONDecodeError, ...)."""
    _, sources = zoo
    _run(tmp_path / "run", sources[:1])
    path = tmp_path / "run" / "state.safetensors"
    raw = path.read_bytes()
    if damage in ("truncated", "empty"):
        path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"")
    else:
        log = {"no_log": None, "log_not_json": "{records", "log_not_dict": "[1, 2]",
               "no_records": json.dumps({"config": {}})}[damage]
        save_checkpoint(path, tiny_net(0).state_dict(), metadata={} if log is None else {"transfer_log": log})
    net = tiny_net(7)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = transfer.create("grasp", net, tiny_domains(4)[-1], run_dir=tmp_path / "run", **CFG)
    with pytest.raises(CheckpointError, match="state.safetensors"):
        transfer.run_sources(m, [str(s) for s in sources], resume=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    shutil.rmtree(tmp_path / "run")
