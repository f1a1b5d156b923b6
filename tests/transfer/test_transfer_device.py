"""Transfer methods run where the model is: sources stream to its device, the fine-tuning takes the precision."""
from __future__ import annotations

import torch

from shiftkit import transfer


def test_transfer_fine_tuning_takes_the_precision(zoo):
    merger = transfer.create("grasp", zoo.model(), zoo.target, precision="bf16")
    assert merger.train_config(1, 0).precision == "bf16"
    assert merger.device == torch.device("cpu")
    with merger.open_source(zoo.sources[0]) as ckpt:  # sources stream to the merge's device
        assert all(ckpt.get(k).device == merger.device for k in ckpt.keys())
