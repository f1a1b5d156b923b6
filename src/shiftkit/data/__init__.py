"""Datasets in their real on-disk formats, DriftFMNIST, corruptions and domain splits."""
from .base import ArrayDataset, data_root
from .catalog import DATASETS, describe, load_domains, register_dataset
from .domains import Domain, few_shot, leave_one_out, split_domain
from .drift import (CORRUPTIONS, DriftSpec, apply_drift, complementary_specs, corrupt, corruption_sets,
                    drift_fmnist, temporal_specs)
from .idx import load_fashion_mnist, read_idx

__all__ = [
    "ArrayDataset", "data_root", "DATASETS", "describe", "load_domains", "register_dataset", "Domain", "few_shot", "leave_one_out", "split_domain",
    "CORRUPTIONS", "DriftSpec", "apply_drift", "complementary_specs", "corrupt", "corruption_sets",
    "drift_fmnist", "temporal_specs", "load_fashion_mnist", "read_idx",
]
