"""GPU checks (`make gpu-check`): every test here is marked `gpu` and skipped where torch sees no CUDA device,
so the CPU suite collects them and moves on. They run the library's own paths on cuda:0 with tiny data.

SHIFTKIT_GPU_CHECK_DEVICE=cpu runs the same checks on the CPU (to check the checks themselves where no GPU is);
the memory checks need torch's CUDA allocator statistics and skip there."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gpu_fixtures import make_domain
from shiftkit.transfer import ZooConfig, build_zoo, zoo_sources

DEVICE = os.environ.get("SHIFTKIT_GPU_CHECK_DEVICE", "cuda")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device: the GPU checks run with `make gpu-check` on a GPU machine")
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.gpu)
            if DEVICE.startswith("cuda") and not torch.cuda.is_available():
                item.add_marker(skip)


@pytest.fixture(scope="session")
def dev() -> torch.device:
    from shiftkit.device import make_deterministic, resolve_device

    dev = resolve_device(DEVICE)
    make_deterministic(dev)
    return dev


@pytest.fixture(scope="session")
def gpu_zoo(tmp_path_factory, dev):
    """A base and three sources trained ON THE GPU (the zoo path itself is under test), target bin3."""
    domains = [make_domain(f"bin{i}", 0.1 * i, seed=i) for i in range(4)]
    out = tmp_path_factory.mktemp("gpu_zoo")
    cfg = ZooConfig(model="small_cnn", model_kwargs={"width": 4}, base_epochs=2, source_epochs=1, batch_size=16)
    build_zoo(domains, out, cfg=cfg, dataset="tiny", exclude=(3,), device=dev)
    base, sources = zoo_sources(out)
    return domains, domains[3], base, sources
