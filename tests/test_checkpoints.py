import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from shiftkit import models
from shiftkit._files import OutputError
from shiftkit.checkpoints import (LazyCheckpoint, atomic_write, import_pt, load_checkpoint, read_metadata, save_checkpoint,
                                  validate_tensors)
from shiftkit.errors import CheckpointError, ConfigError


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4, **kw)


def _snapshot(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_roundtrip_with_metadata(tmp_path):
    a, b = _net(0), _net(1)
    save_checkpoint(tmp_path / "a.safetensors", a, metadata={"domain": "bin3"})
    meta = load_checkpoint(tmp_path / "a.safetensors", b)
    assert meta["arch"] == "small_cnn" and meta["domain"] == "bin3" and meta["num_classes"] == "4"
    assert json.loads(meta["config"])["width"] == 4
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # no temp file left behind; the output's lock file lives until this process lets go of its outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.safetensors.lock", "a.safetensors"]


def test_lazy_reader_yields_one_tensor(tmp_path):
    a = _net()
    save_checkpoint(tmp_path / "a.safetensors", a)
    with LazyCheckpoint(tmp_path / "a.safetensors") as ck:
        assert set(ck.keys()) == set(a.state_dict())
        assert torch.equal(ck.get("classifier.3.weight"), a.classifier[3].weight)
        assert ck.shape("classifier.3.weight") == [4, 8]


@pytest.mark.parametrize("case,match", [
    ("arch", "arch 'vgg11'.*'small_cnn'"),
    ("shape", "'classifier.3.weight' has shape"),
    ("dtype", "'classifier.3.bias' has dtype"),
    ("missing", "missing tensor.*classifier.3.bias"),
    ("extra", "unexpected tensor.*bogus"),
    ("nan", "'features.0.weight' holds NaN"),
])
def test_bad_checkpoints_name_the_tensor_and_leave_model_untouched(tmp_path, case, match):
    state = {k: v.clone() for k, v in _net(1).state_dict().items()}
    meta = {"arch": "small_cnn"}
    if case == "arch":
        meta["arch"] = "vgg11"
    elif case == "shape":
        state["classifier.3.weight"] = torch.zeros(5, 8)
    elif case == "dtype":
        state["classifier.3.bias"] = state["classifier.3.bias"].double()
    elif case == "missing":
        del state["classifier.3.bias"]
    elif case == "extra":
        state["bogus"] = torch.zeros(1)
    elif case == "nan":
        state["features.0.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / f"{case}.safetensors"
    save_file(state, str(path), metadata=meta)
    net = _net(0)
    before = _snapshot(net)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path, net)
    assert str(path) in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_nan_tensor_skipped_by_option(tmp_path):
    state = {k: v.clone() for k, v in _net(1).state_dict().items()}
    state["features.0.weight"].fill_(float("inf"))
    save_file(state, str(tmp_path / "n.safetensors"))
    net = _net(0)
    keep = net.features[0].weight.clone()
    with pytest.warns(UserWarning, match="features.0.weight"):
        load_checkpoint(tmp_path / "n.safetensors", net, nonfinite="skip")
    assert torch.equal(net.features[0].weight, keep)
    assert torch.equal(net.classifier[3].weight, state["classifier.3.weight"])


class _Reads(dict):
    """A state dict that records which tensors were read."""

    def __init__(self, state):
        super().__init__(state)
        self.read = []

    def get(self, name, default=None):
        self.read.append(name)
        return super().get(name, default)


def test_validate_tensors_streams_a_checkpoint_against_meta_shapes(tmp_path):
    a = _net(1)
    save_checkpoint(tmp_path / "a.safetensors", a)
    expected = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in _net(0).state_dict().items()}
    with LazyCheckpoint(tmp_path / "a.safetensors") as ck:
        assert validate_tensors("a", ck, expected, keep=False) == ({}, [])
        kept, skipped = validate_tensors("a", ck, expected)
    assert skipped == [] and list(kept) == list(expected)
    assert all(torch.equal(kept[k], v) for k, v in a.state_dict().items())


def test_validate_tensors_names_first_then_each_tensor(tmp_path):
    expected = _net(0).state_dict()
    state = _Reads({k: v.clone() for k, v in _net(1).state_dict().items() if k != "classifier.3.bias"})
    with pytest.raises(CheckpointError, match=r"src\.pt: missing tensor.*classifier\.3\.bias"):
        validate_tensors("src.pt", state, expected)
    assert state.read == []  # a file with the wrong names is refused before any tensor is read
    state = _Reads({k: v.clone() for k, v in _net(1).state_dict().items()})
    state["classifier.3.weight"] = torch.zeros(5, 8)
    with pytest.raises(CheckpointError, match=r"src\.pt: tensor 'classifier\.3\.weight' has shape \(5, 8\)"):
        validate_tensors("src.pt", state, expected)


def test_validate_tensors_skips_or_rejects_nonfinite():
    expected = _net(0).state_dict()
    state = {k: v.clone() for k, v in _net(1).state_dict().items()}
    state["features.0.weight"][0, 0, 0, 0] = float("inf")
    with pytest.raises(CheckpointError, match="'features.0.weight' holds NaN/Inf"):
        validate_tensors("s", state, expected)
    kept, skipped = validate_tensors("s", state, expected, nonfinite="skip")
    assert skipped == ["features.0.weight"] and set(kept) == set(expected) - {"features.0.weight"}
    with pytest.raises(ConfigError, match="nonfinite='drop'; valid: error, skip"):
        validate_tensors("s", state, expected, nonfinite="drop")


@pytest.mark.parametrize("damage", ["truncate", "header", "empty"])
def test_corrupt_files_are_checkpoint_errors(tmp_path, damage):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _net())
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "header": b"\xff" * 8 + raw[8:], "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_checkpoint(path, _net())


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "x.bin"
    atomic_write(path, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OutputError, match="x.bin: cannot write .disk full.; the earlier file is kept"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [".x.bin.lock", "x.bin"]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pt_import_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _Evil(str(marker))}))
    with pytest.raises(CheckpointError, match="evil.pt"):
        import_pt(path)
    assert not marker.exists()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "ok.pt")
    assert torch.equal(import_pt(tmp_path / "ok.pt")["w"], torch.ones(2))
