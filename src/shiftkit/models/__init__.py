"""Model zoo: `create(name, num_classes=..., in_chans=...)` and `names()`."""
from . import resnet_cifar, small_cnn, timm_bridge, vgg  # noqa: F401  (registers the families)
from ._factory import MODELS, create, names, register_model

__all__ = ["create", "names", "register_model", "MODELS"]
