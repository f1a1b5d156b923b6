"""Bad sources and bad options: clear errors naming the file and tensor; NaN sources skippable."""
from __future__ import annotations

import copy

import pytest
import torch

from shiftkit import CheckpointError, ConfigError, models, transfer
from shiftkit.checkpoints import LazyCheckpoint, model_metadata, save_checkpoint

from transfer_fixtures import FAST


def _state(path):
    with LazyCheckpoint(path) as c:
        return {k: c.get(k).clone() for k in c.keys()}, dict(c.metadata)


def _write(tmp_path, name, state, meta):
    path = tmp_path / name
    save_checkpoint(path, state, metadata=meta, allow_nonfinite=True)  # the NaN source is the point
    return path


def _bad_sources(zoo, tmp_path):
    state, meta = _state(zoo.sources[1])
    other_arch = models.create("small_cnn_nobn", num_classes=4, in_chans=1, width=4)
    wide = models.create("small_cnn", num_classes=4, in_chans=1, width=8)
    three = models.create("small_cnn", num_classes=3, in_chans=1, width=4)
    missing = {k: v for k, v in state.items() if k != "features.0.weight"}
    extra = {**state, "head.extra": torch.zeros(3)}
    yield "arch", _write(tmp_path, "arch.safetensors", other_arch.state_dict(), model_metadata(other_arch)), "arch"
    yield "classes", _write(tmp_path, "classes.safetensors", three.state_dict(), model_metadata(three)), "3 classes"
    yield "missing", _write(tmp_path, "missing.safetensors", missing, meta), "features.0.weight"
    yield "extra", _write(tmp_path, "extra.safetensors", extra, meta), "head.extra"
    wide_meta = {**meta, "config": model_metadata(wide)["config"]}
    yield "shape", _write(tmp_path, "shape.safetensors", wide.state_dict(), wide_meta), "features.0.weight"


@pytest.mark.parametrize("method", ["grasp", "grasp_taylor", "fusion"])
def test_bad_sources_name_file_and_tensor(zoo, tmp_path, method):
    merger = transfer.create(method, zoo.model(), zoo.target, run_dir=tmp_path / "run", **FAST)
    merger.absorb(zoo.sources[0])
    for kind, path, needle in _bad_sources(zoo, tmp_path):
        with pytest.raises(CheckpointError) as err:
            merger.absorb(path)
        assert path.name in str(err.value) and needle in str(err.value), (kind, str(err.value))
    assert len(merger.records) == 1


def test_nan_source_rejected_or_skipped_with_run_intact(zoo, tmp_path):
    state, meta = _state(zoo.sources[1])
    state["classifier.1.weight"][0, 0] = float("nan")
    bad = _write(tmp_path, "nan.safetensors", state, meta)
    merger = transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path / "a", **FAST)
    merger.absorb(zoo.sources[0])
    with pytest.raises(CheckpointError, match=r"nan\.safetensors.*classifier\.1\.weight.*NaN"):
        merger.absorb(bad)
    skipper = transfer.create("grasp", zoo.model(), zoo.target, run_dir=tmp_path / "b", on_bad_source="skip", **FAST)
    skipper.absorb(zoo.sources[0])
    before = copy.deepcopy(skipper.model.state_dict())
    with pytest.warns(UserWarning, match="classifier.1.weight"):
        record = skipper.absorb(bad)
    assert record["skipped"] and all(torch.equal(before[k], v) for k, v in skipper.model.state_dict().items())
    skipper.absorb(zoo.sources[2])  # the run goes on
    assert [r.get("skipped", False) for r in skipper.records] == [False, True, False]


def test_bad_options(zoo):
    with pytest.raises(ConfigError, match=r"tau=1\.5"):
        transfer.create("grasp", zoo.model(), zoo.target, tau=1.5)
    with pytest.raises(ConfigError, match="grasp.*target_only|valid names"):
        transfer.create("graps", zoo.model(), zoo.target)
    with pytest.raises(ConfigError, match="valid: .*tau"):
        transfer.create("grasp", zoo.model(), zoo.target, tua=0.3)
    with pytest.raises(ConfigError, match="at least one source"):
        transfer.run_sources(transfer.create("grasp", zoo.model(), zoo.target), [])
    with pytest.raises(ConfigError, match="granularity"):
        transfer.create("grasp", zoo.model(), zoo.target, granularity="row")
    with pytest.raises(ConfigError, match="base"):
        transfer.create("ties", zoo.model(), zoo.target)
