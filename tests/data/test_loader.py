"""Training batches: augmentation from the caller's generator only, `none` unchanged, evaluation never augments."""
import pytest
import torch

from shiftkit import models
from shiftkit.config import parse_experiment
from shiftkit.data import ArrayDataset
from shiftkit.data.loader import AUGMENTS, augment_batch
from shiftkit.errors import ConfigError
from shiftkit.train import TrainConfig, evaluate, fit, iterate_batches


@pytest.fixture()
def ds() -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.randint(0, 256, (37, 3, 16, 16), dtype=torch.uint8, generator=g),
                        torch.arange(37) % 2, ["a", "b"])


def test_none_is_the_plain_shuffled_batches(ds):
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(3))
    got = list(iterate_batches(ds, 10, shuffle=True, generator=torch.Generator().manual_seed(3), augment="none"))
    assert [len(y) for _, y in got] == [10, 10, 10, 7]
    assert torch.equal(torch.cat([x for x, _ in got]), ds.images[order].float() / 255)
    assert torch.equal(torch.cat([y for _, y in got]), ds.labels[order])


@pytest.mark.parametrize("name", ["flip", "crop_flip"])
def test_augment_is_seeded_by_the_generator_alone(ds, name):
    x = ArrayDataset.to_float(ds.images)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = augment_batch(x.clone(), name, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG (model init, dropout) untouched
    b = augment_batch(x.clone(), name, torch.Generator().manual_seed(1))
    c = augment_batch(x.clone(), name, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert torch.equal(x, ArrayDataset.to_float(ds.images))  # the input batch is not modified


def test_flip_flips_whole_images(ds):
    x = ArrayDataset.to_float(ds.images)
    out = augment_batch(x, "flip", torch.Generator().manual_seed(0))
    flipped = [bool(torch.equal(o, i.flip(-1))) for o, i in zip(out, x)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 32


def test_evaluation_never_augments(ds):
    torch.manual_seed(0)
    net = models.create("small_cnn", num_classes=2, in_chans=3)
    fit(net, ds, ds, TrainConfig(epochs=1, batch_size=8, augment="crop_flip", progress=False))
    x = torch.cat([x for x, _ in iterate_batches(ds, 512)])
    assert torch.equal(x, ArrayDataset.to_float(ds.images))  # the eval path: plain pixels
    logits = net.eval()(x)
    assert evaluate(net, ds)["accuracy"] == (logits.argmax(1) == ds.labels).float().mean().item()


def test_augmented_training_is_reproducible_and_differs_from_none(ds):
    def train(augment: str) -> dict:
        torch.manual_seed(0)
        net = models.create("small_cnn", num_classes=2, in_chans=3)
        fit(net, ds, None, TrainConfig(epochs=2, batch_size=8, augment=augment, progress=False))
        return net.state_dict()

    a, b, n = train("crop_flip"), train("crop_flip"), train("none")
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], n[k]) for k in a)


def test_unknown_augment_names_the_key():
    with pytest.raises(ConfigError, match="augment='rotate'; valid: none, flip, crop_flip"):
        TrainConfig(augment="rotate")
    with pytest.raises(ConfigError, match=r"data\.augment: valid: none, flip, crop_flip \(got 'rotate'\)"):
        parse_experiment({"data": {"augment": "rotate"}}, where="x.yaml")
    assert set(AUGMENTS) == {"none", "flip", "crop_flip"}
