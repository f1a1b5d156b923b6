"""Datasets in their real on-disk formats, DriftFMNIST, corruptions and domain splits."""
from .base import ArrayDataset, data_root
from .domains import Domain, domain_index, few_shot, leave_one_out, split_domain
from .drift import (CORRUPTIONS, DriftSpec, apply_drift, complementary_specs, corrupt, corruption_sets,
                    drift_fmnist, temporal_specs)
from .cifar import load_cifar
from .folders import is_presplit, load_clear, load_image_folder, load_presplit, load_yearbook
from .idx import load_fashion_mnist, read_idx
from .tinyimagenet import load_tiny_imagenet
from .catalog import DATASETS, describe, load_domains, register_dataset  # noqa: E402  (needs the readers)

__all__ = [
    "ArrayDataset", "data_root", "DATASETS", "describe", "load_domains", "register_dataset", "Domain", "domain_index", "few_shot", "leave_one_out", "split_domain",
    "CORRUPTIONS", "DriftSpec", "apply_drift", "complementary_specs", "corrupt", "corruption_sets",
    "drift_fmnist", "temporal_specs", "load_fashion_mnist", "read_idx",
    "load_cifar", "load_tiny_imagenet", "load_image_folder", "load_presplit", "is_presplit", "load_clear", "load_yearbook",
]
