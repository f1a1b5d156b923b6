import pytest
import torch

from shiftkit import models
from shiftkit.errors import ConfigError

SMALL = {"small_cnn", "small_cnn_nobn", "resnet20", "resnet56", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"}


@pytest.mark.parametrize("name", models.names())
def test_every_model_forward_backward(name):
    """Contract over the whole registry: any channels / classes, logits (N, classes), gradients flow."""
    size, chans = (28, 1) if name in SMALL else (64, 3)
    net = models.create(name, num_classes=7, in_chans=chans)
    assert net.shiftkit_arch == name and net.shiftkit_config["num_classes"] == 7
    out = net(torch.rand(2, chans, size, size))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_sizes_match_the_papers():
    count = lambda n, **kw: sum(p.numel() for p in models.create(n, **kw).parameters())
    assert 0.26e6 < count("resnet20", in_chans=3) < 0.29e6  # He et al.: 0.27M
    assert 0.84e6 < count("resnet56", in_chans=3) < 0.88e6  # 0.85M
    assert 25.0e6 < count("resnet50", num_classes=1000, in_chans=3) < 26.0e6  # 25.6M
    assert 1.0e6 < count("mobilevit_xxs", num_classes=1000, in_chans=3) < 1.4e6  # 1.3M


def test_width_option_and_unknown_name():
    narrow = models.create("vgg11", in_chans=1, width=0.25)
    assert narrow.features[0].out_channels == 16
    with pytest.raises(ConfigError, match="unknown model 'resnet21'.*resnet20"):
        models.create("resnet21")
