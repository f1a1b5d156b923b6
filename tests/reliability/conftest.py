"""One forking zygote per session (imports paid once) for the kill-anywhere campaigns."""
import pytest
import torch

from harness._zygote import Zygote


@pytest.fixture(scope="session")
def zygote(tmp_path_factory):
    torch.set_num_threads(1)
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()
