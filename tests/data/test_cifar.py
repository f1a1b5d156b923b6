"""CIFAR readers on tiny batches written in the real pickle format (bytes keys, uint8 rows)."""
import pickle

import numpy as np
import pytest
import torch

from shiftkit.data.cifar import load_cifar
from shiftkit.errors import DataError

C10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path, obj, protocol=2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def _cifar10(tmp_path, protocol=2):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _dump(folder / "batches.meta", {b"num_cases_per_batch": 2, b"label_names": [n.encode() for n in C10],
                                    b"num_vis": 3072}, protocol)
    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": [i, i + 1],
                                           b"data": _rows(2, i), b"filenames": [b"a.png", b"b.png"]}, protocol)
    _dump(folder / "test_batch", {b"batch_label": b"testing batch", b"labels": [9, 0, 3],
                                  b"data": _rows(3, 0), b"filenames": [b"c.png"] * 3}, protocol)
    return folder


def _cifar100(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine, coarse = [f"fine{i}".encode() for i in range(100)], [f"coarse{i}".encode() for i in range(20)]
    _dump(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": coarse})
    for split, n in (("train", 4), ("test", 2)):
        _dump(folder / split, {b"filenames": [b"x.png"] * n, b"batch_label": split.encode(),
                               b"fine_labels": list(range(95, 95 + n)), b"coarse_labels": list(range(n)),
                               b"data": _rows(n, n)})
    return folder


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_train_and_test(tmp_path, protocol):
    folder = _cifar10(tmp_path, protocol)
    train = load_cifar(tmp_path, train=True)
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6] and train.labels.dtype == torch.int64
    assert train.classes == C10
    # rows are 1024 red, then green, then blue values, row-major
    assert torch.equal(train.images[0], torch.from_numpy(_rows(2, 1)[0].reshape(3, 32, 32)))
    assert train.images[0, 1, 0, 0] == _rows(2, 1)[0, 1024]
    test = load_cifar(folder, train=False)  # the batches folder itself works too
    assert test.images.shape == (3, 3, 32, 32) and test.labels.tolist() == [9, 0, 3]


def test_cifar10_written_by_numpy1_names(tmp_path):
    """Real CIFAR files name numpy.core.multiarray (numpy 1); both module spellings are read."""
    folder = _cifar10(tmp_path)
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in path.read_bytes()
    assert load_cifar(folder, train=False).labels.tolist() == [9, 0, 3]


def test_cifar100_fine_and_coarse(tmp_path):
    _cifar100(tmp_path)
    fine = load_cifar(tmp_path, train=True)
    assert fine.images.shape == (4, 3, 32, 32) and len(fine.classes) == 100
    assert fine.labels.tolist() == [95, 96, 97, 98] and fine.classes[95] == "fine95"
    coarse = load_cifar(tmp_path / "cifar-100-python", train=False, coarse=True)
    assert coarse.classes == [f"coarse{i}" for i in range(20)] and coarse.labels.tolist() == [0, 1]


def test_coarse_on_cifar10_fails(tmp_path):
    _cifar10(tmp_path)
    with pytest.raises(DataError, match="cifar-10-batches-py.*no coarse"):
        load_cifar(tmp_path, train=True, coarse=True)


def test_not_a_cifar_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_cifar(tmp_path, train=True)


def test_missing_batch_file(tmp_path):
    folder = _cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: CIFAR file not found"):
        load_cifar(folder, train=True)


def test_missing_key_named(tmp_path):
    folder = _cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": _rows(3, 0), b"fine_labels": [1, 2, 3]})
    with pytest.raises(DataError, match=r"test_batch has no key 'labels'"):
        load_cifar(folder, train=False)
    _dump(folder / "batches.meta", {b"names": []})
    with pytest.raises(DataError, match=r"batches.meta has no key 'label_names'"):
        load_cifar(folder, train=False)


def test_count_mismatch(tmp_path):
    folder = _cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": _rows(3, 0), b"labels": [1, 2]})
    with pytest.raises(DataError, match=r"test_batch: 3 images .* 2 entries"):
        load_cifar(folder, train=False)


def test_wrong_row_length(tmp_path):
    folder = _cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 3071), np.uint8), b"labels": [1, 2]})
    with pytest.raises(DataError, match=r"test_batch: 'data' must have rows of 3072"):
        load_cifar(folder, train=False)


def test_label_out_of_range(tmp_path):
    folder = _cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": _rows(2, 0), b"labels": [1, 10]})
    with pytest.raises(DataError, match=r"test_batch: 'labels' must be integers in \[0, 10\)"):
        load_cifar(folder, train=False)


@pytest.mark.parametrize("content", [b"not a pickle at all", b"", pickle.dumps([1, 2, 3])])
def test_not_a_pickle_or_not_a_dict(tmp_path, content):
    folder = _cifar10(tmp_path)
    (folder / "test_batch").write_bytes(content)
    with pytest.raises(DataError, match="test_batch"):
        load_cifar(folder, train=False)


def test_truncated_pickle(tmp_path):
    folder = _cifar10(tmp_path)
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR pickle"):
        load_cifar(folder, train=False)


class _Evil:
    """Unpickling this would create a file: the restricted unpickler must refuse it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")


def test_malicious_pickle_runs_no_code(tmp_path):
    folder = _cifar10(tmp_path)
    target = tmp_path / "pwned.txt"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        _dump(folder / "test_batch", {b"data": _Evil(target), b"labels": [1]}, protocol)
        with pytest.raises(DataError, match=r"test_batch .*refusing to load global .*open"):
            load_cifar(folder, train=False)
        assert not target.exists()
    # the same pickle really does create the file when loaded without restriction
    pickle.loads((folder / "test_batch").read_bytes())[b"data"].close()
    assert target.exists()
