"""Issue 22 §2: images stored wider than 8 bits decode by their real range (16-bit PNG, float / int TIFF, IDX
with float or wider-int payloads) or are refused with one line naming the file; nothing silently saturates."""
import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from shiftkit.data._images import read_image
from shiftkit.data._pixels import to_uint8
from shiftkit.data.idx import load_fashion_mnist
from shiftkit.errors import DataError

RAMP = np.linspace(0, 1, 64 * 64, dtype=np.float64).reshape(64, 64)  # every grey level, 0 .. 1


def _save(tmp_path, name, arr, mode=None):
    path = tmp_path / name
    (Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)).save(path)
    return path


def test_16bit_png_keeps_its_range_instead_of_clipping(tmp_path):
    path = _save(tmp_path, "g16.png", (RAMP * 65535).astype(np.uint16))
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    out = read_image(path, channels=1)[0]
    want = ((RAMP * 65535).astype(np.uint16) >> 8).astype(np.uint8)
    assert np.array_equal(out, want)
    assert (out == 255).mean() < 0.01 and 120 < out.mean() < 135  # PIL's convert made 99% of it white


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_tiff_is_scaled_not_black(tmp_path, scale):
    path = _save(tmp_path, "f.tiff", (RAMP * scale).astype(np.float32))
    assert Image.open(path).mode == "F"
    out = read_image(path, channels=3)
    assert out.shape == (3, 64, 64) and np.array_equal(out[0], out[2])
    assert abs(int(out[0].max()) - 255) <= 1 and out[0].min() == 0 and 120 < out.mean() < 135


@pytest.mark.parametrize("values, match", [
    (np.full((8, 8), 300.0, np.float32), r"span \[300, 300\]"),
    (np.full((8, 8), -0.5, np.float32), r"span \[-0.5, -0.5\]"),
    (np.full((8, 8), np.nan, np.float32), "include NaN/Inf"),
])
def test_float_tiff_out_of_range_is_refused_naming_the_file(tmp_path, values, match):
    path = _save(tmp_path, "bad.tiff", values)
    with pytest.raises(DataError, match=rf"image .*bad\.tiff: float32 pixel values {match}"):
        read_image(path)


def test_32bit_int_image_by_range(tmp_path):
    small = _save(tmp_path, "i8.tiff", np.arange(64, dtype=np.int32).reshape(8, 8), mode="I")
    assert np.array_equal(read_image(small, channels=1)[0], np.arange(64).reshape(8, 8))
    wide = _save(tmp_path, "i16.tiff", (np.arange(64, dtype=np.int32) * 1000).reshape(8, 8), mode="I")
    assert read_image(wide, channels=1)[0].max() == (63000 >> 8)
    huge = _save(tmp_path, "i32.tiff", np.full((8, 8), 10**7, np.int32), mode="I")
    with pytest.raises(DataError, match=r"i32\.tiff: int32 pixel values span \[10000000, 10000000\]"):
        read_image(huge)


def test_8bit_images_are_unchanged(tmp_path):
    arr = (RAMP * 255).astype(np.uint8)
    assert np.array_equal(read_image(_save(tmp_path, "g8.png", arr), channels=1)[0], arr)


def _idx(path, code, dtype, array):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(dtype).tobytes())


@pytest.mark.parametrize("code, dtype, scale, ok", [
    (0x0D, ">f4", 1.0, True), (0x0E, ">f8", 255.0, True), (0x0B, ">i2", 255.0, True), (0x0C, ">i4", 65535.0, True),
    (0x0D, ">f4", 1000.0, False), (0x0C, ">i4", -10.0, False)])
def test_idx_wider_dtypes_convert_by_range_or_refuse(tmp_path, code, dtype, scale, ok):
    imgs = np.broadcast_to(RAMP[:28, :28] * 27, (4, 28, 28)) / 27  # values 0 .. ~0.19
    imgs = np.concatenate([imgs, np.ones((1, 28, 28))]) * scale   # one white image: the range reaches `scale`
    _idx(tmp_path / "train-images-idx3-ubyte.gz", code, dtype, imgs)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x08, np.uint8, np.arange(5) % 2)
    if not ok:
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: (float32|int32) pixel values span"):
            load_fashion_mnist(tmp_path)
        return
    x = load_fashion_mnist(tmp_path).images
    assert x.dtype.is_floating_point is False and int(x.max()) == 255 and int(x[:4].max()) > 40


def test_to_uint8_rules():
    assert to_uint8(np.array([0, 65535], np.uint16), "x").tolist() == [0, 255]
    assert to_uint8(np.array([0.0, 0.5, 1.0]), "x").tolist() == [0, 128, 255]
    assert to_uint8(np.array([True, False]), "x").tolist() == [255, 0]
    with pytest.raises(DataError, match="x: int8 pixel values span"):
        to_uint8(np.array([-1, 5], np.int8), "x")
