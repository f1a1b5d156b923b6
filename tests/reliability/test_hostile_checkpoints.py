"""Hostile checkpoints: every damaged / lying / code-carrying file is refused with a CheckpointError
naming it, by every reader, with nothing executed and the model (or merger) untouched."""
import os
import pickle

import pytest
import torch

from harness._badopts import run_cli_case
from harness._hostile import check_hostile, check_hostile_cli, hostile_files
from harness._tiny import tiny_domains, tiny_net
from shiftkit.checkpoints import import_pt, load_checkpoint
from shiftkit.errors import CheckpointError
from shiftkit.transfer import create


def test_every_hostile_file_is_refused_by_every_reader(tmp_path):
    target = tiny_domains(2)[1]
    runs = iter(range(10_000))
    report = check_hostile(tmp_path, merger_factory=lambda: create(
        "grasp", tiny_net(2), target, run_dir=tmp_path / f"run{next(runs)}", initial_epochs=0))
    assert report["failures"] == []
    assert not report["code_executed"]
    assert report["safetensors_files"] >= 45 and report["pt_files"] >= 15


@pytest.mark.parametrize("fn", ["system", "open", "exec"])
def test_pt_pickle_payload_creates_no_file(tmp_path, fn):
    """The proof asked for: the payload would create `marker`; after the refused import it does not exist."""
    marker = tmp_path / "EXECUTED"

    class Payload:
        def __reduce__(self):
            return {"system": (os.system, (f"touch {marker}",)), "open": (open, (str(marker), "w")),
                    "exec": (exec, (f"open({str(marker)!r}, 'w').close()",))}[fn]

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(2), "evil": Payload()}}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        import_pt(path)
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="evil.pt"):
        import_pt(path)
    assert not marker.exists()
    # the same bytes really do run when unpickled without the restriction: the test would see it
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_empty_pt_file_is_a_checkpoint_error(tmp_path):
    """An empty .pt made import_pt's own error message raise IndexError (EOFError has no text)."""
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        import_pt(path)


def test_oversized_header_claim_is_refused_without_allocating(tmp_path):
    files = hostile_files(tmp_path, tiny_net(0), tmp_path / "m")
    huge = next(p for p in files["safetensors"] if p.name == "header_len_0x10000000000.safetensors")
    net = tiny_net(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointError, match="header too large"):
        load_checkpoint(huge, net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_cli_refuses_hostile_files_in_one_line(tmp_path):
    report = check_hostile_cli(tmp_path, lambda argv: run_cli_case(argv, cwd=tmp_path), limit=2)
    assert report["cli_checks"] == 8 and report["failures"] == []


def test_lazy_shape_of_a_missing_tensor_is_a_checkpoint_error(tmp_path):
    """LazyCheckpoint.shape let safetensors' own SafetensorError escape for an unknown name."""
    from shiftkit.checkpoints import LazyCheckpoint, save_checkpoint

    save_checkpoint(tmp_path / "a.safetensors", tiny_net(0))
    with LazyCheckpoint(tmp_path / "a.safetensors") as ck, pytest.raises(CheckpointError, match="'nope' missing"):
        ck.shape("nope")
