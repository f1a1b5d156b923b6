"""One contract test over the whole transfer registry: every method absorbs, persists, keeps shapes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from shiftkit import transfer
from shiftkit.train import predict_logits

from transfer_fixtures import FAST


def _cfg(name: str, zoo) -> dict:
    fields = {f.name for f in dataclasses.fields(transfer.config_class(name))}
    return {**FAST, **({"base": str(zoo.base)} if "base" in fields else {})}


@pytest.mark.parametrize("name", transfer.names())
def test_every_method_absorbs_and_keeps_shapes(name, zoo, tmp_path):
    torch.manual_seed(0)
    model = zoo.model()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    merger = transfer.create(name, model, zoo.target, run_dir=tmp_path, **_cfg(name, zoo))
    assert isinstance(merger, transfer.Merger)
    for path in zoo.sources[:2]:
        record = merger.absorb(path)
        assert record["source"] == str(path)
    out = merger.finish()
    assert out is merger.model
    logits = predict_logits(out, zoo.target.test)
    assert logits.shape == (len(zoo.target.test), 4)
    assert torch.isfinite(logits).all()
    if name not in ("ensemble", "ensemble_hard", "pearl"):  # those wrap the model (members / adapters)
        assert {k: v.shape for k, v in out.state_dict().items()} == shapes
    assert (tmp_path / "state.safetensors").is_file() and (tmp_path / "log.json").is_file()


@pytest.mark.parametrize("name", [n for n in transfer.names() if transfer.merger_class(n).order_invariant])
def test_an_order_invariant_method_gives_the_same_model_for_any_source_order(name, zoo, tmp_path):
    """`order_invariant` lets the benchmark run one order only: it must hold, variants included."""
    outputs = []
    for order, sources in (("fwd", zoo.sources[:3]), ("rev", zoo.sources[:3][::-1])):
        torch.manual_seed(0)
        merger = transfer.create(name, zoo.model(), zoo.target, run_dir=tmp_path / order, **_cfg(name, zoo))
        for path in sources:
            merger.absorb(path)
        outputs.append(predict_logits(merger.finish(), zoo.target.test))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
