"""The source zoo: one shared base, one source per domain, safetensors with metadata, a manifest."""
from __future__ import annotations

import pytest

from shiftkit.checkpoints import read_metadata
from shiftkit.errors import ConfigError
from shiftkit.transfer import ZooConfig, build_zoo, zoo_sources
from shiftkit.transfer.zoo import zoo_checksum


def test_zoo_files_carry_arch_classes_and_domain(zoo):
    assert [read_metadata(p)["domain"] for p in zoo.sources] == ["bin0", "bin1", "bin2", "bin3"]  # bin4 = target
    meta = read_metadata(zoo.sources[1])
    assert (meta["arch"], meta["num_classes"], meta["role"], meta["dataset"]) == ("small_cnn", "4", "source", "tiny")
    assert read_metadata(zoo.base)["role"] == "base"
    base, srcs = zoo_sources(zoo.base.parent, exclude=("bin1", 3))
    assert base == zoo.base and [p.name for p in srcs] == ["source_bin0.safetensors", "source_bin2.safetensors"]


def test_zoo_rebuild_keeps_existing_files_and_checks_the_base(zoo):
    mtimes = [p.stat().st_mtime_ns for p in zoo.sources]
    build_zoo(zoo.domains, zoo.base.parent, cfg=ZooConfig(model_kwargs={"width": 4}), dataset="tiny", exclude=(4,))
    assert [p.stat().st_mtime_ns for p in zoo.sources] == mtimes
    with pytest.raises(ConfigError, match="base_domain"):
        build_zoo(zoo.domains, zoo.base.parent, cfg=ZooConfig(base_domain=4), exclude=(4,))
    with pytest.raises(ConfigError, match="zoo.json"):
        zoo_sources(zoo.base.parent / "nowhere")


def test_zoo_is_a_function_of_its_seed(zoo, tmp_path):
    """Same seed -> the same bytes in every checkpoint (base init included); another seed -> other bytes."""
    cfg = ZooConfig(model="small_cnn", model_kwargs={"width": 4}, base_epochs=1, source_epochs=1, batch_size=16)
    sums = []
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        build_zoo(zoo.domains[:3], tmp_path / run, cfg=ZooConfig(**{**cfg.__dict__, "seed": seed}), dataset="tiny")
        sums.append(zoo_checksum(tmp_path / run))
    files = sorted(p.name for p in (tmp_path / "a").glob("*.safetensors"))
    assert len(files) == 4 and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert sums[0] == sums[1] != sums[2]
