import gzip

import numpy as np
import pytest

from idx_fixtures import write_idx
from shiftkit.data import load_fashion_mnist, read_idx
from shiftkit.errors import DataError


def test_roundtrip_gz_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", a)), a)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", a, gz=False)), a)


def test_wrong_magic_names_file(tmp_path):
    p = tmp_path / "bad-images-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="bad-images-idx3-ubyte.gz.*magic"):
        read_idx(p)


def test_truncated_names_file(tmp_path):
    p = write_idx(tmp_path / "t.gz", np.zeros((5, 4, 4), np.uint8))
    raw = gzip.decompress(p.read_bytes())
    with gzip.open(p, "wb") as f:
        f.write(raw[:-7])
    with pytest.raises(DataError, match=r"t\.gz.*truncated"):
        read_idx(p)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    p = tmp_path / "c.gz"
    p.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match="c.gz"):
        read_idx(p)


def test_label_count_mismatch_names_both_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="5 images.*4 labels"):
        load_fashion_mnist(tmp_path)


def test_missing_files_and_env_root(tmp_path, monkeypatch, fmnist_root):
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path)
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    ds = load_fashion_mnist(train=False)
    assert ds.images.shape == (160, 1, 28, 28) and ds.labels.max() == 9 and ds.num_classes == 10
