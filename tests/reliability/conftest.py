"""One forking zygote per session (imports paid once) for the crash and CLI checks."""
import pytest
import torch

from shiftkit.bench._zygote import Zygote


@pytest.fixture(scope="session")
def zygote(tmp_path_factory):
    torch.set_num_threads(1)
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()
