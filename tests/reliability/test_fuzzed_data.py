"""Fuzzed IDX, CIFAR-pickle, image-folder, Tiny ImageNet and Yearbook inputs: only shiftkit errors or valid loads, no hang,
no memory blow-up (the worker's address space is capped). The full count runs in
`shiftkit bench reliability`; here a few hundred, plus regressions for what the fuzzer found."""
import gzip
import pickle
import random
import tracemalloc
import zlib

import numpy as np
import pytest

from harness._fuzz import FORMATS, make_case, mutate, run_fuzz
from shiftkit.data import load_cifar, read_idx
from shiftkit.errors import DataError


def test_mutator_is_seeded_and_changes_bytes():
    data = bytes(range(256)) * 4
    a = [mutate(data, random.Random(i)) for i in range(50)]
    assert a == [mutate(data, random.Random(i)) for i in range(50)]
    assert sum(x != data for x in a) >= 45


def test_cases_are_reproducible(tmp_path):
    FORMATS["idx"][0]((tmp_path / "seed").mkdir() or tmp_path / "seed")
    one = make_case("idx", tmp_path / "seed", tmp_path / "a", 3)
    two = make_case("idx", tmp_path / "seed", tmp_path / "b", 3)
    assert {p.name: p.read_bytes() for p in one.iterdir()} == {p.name: p.read_bytes() for p in two.iterdir()}


def test_fuzzed_inputs_raise_only_shiftkit_errors(tmp_path):
    report = run_fuzz(tmp_path, per_format=50, seed=1, timeout=30, cap_mib=1024)
    assert report["inputs"] == 50 * len(FORMATS) >= 300
    assert report["failures"] == []
    for fmt, counts in report["per_format"].items():
        assert counts.get("rejected", 0) > 0, fmt  # the mutations do reach the checks


# ---------------------------------------------------------------- regressions found by the fuzzer

def _idx(dims, payload: bytes) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def test_corrupt_deflate_stream_is_a_data_error(tmp_path):
    """zlib.error (a valid gzip header over a broken deflate stream) escaped read_idx."""
    good = gzip.compress(_idx((50,), bytes(range(50))), mtime=0)
    bad = bytearray(good)
    bad[10] ^= 0x06  # first deflate block header: invalid block type
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        read_idx(path)


def test_gzip_bomb_is_not_read_past_its_header_claim(tmp_path):
    """read_idx decompressed the whole stream before checking sizes: a small .gz could fill memory."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    chunks = [comp.compress(_idx((10, 28, 28), b""))]
    zeros = bytes(1 << 20)
    chunks += [comp.compress(zeros) for _ in range(256)]  # 256 MiB of image bytes behind a 7,840-byte claim
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(b"".join(chunks) + comp.flush())
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="needs 7840"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_lying_dims_on_a_plain_file_allocate_nothing(tmp_path):
    path = tmp_path / "lie-idx3-ubyte"
    path.write_bytes(_idx((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), bytes(100)))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_non_utf8_class_name_is_a_data_error(tmp_path):
    """UnicodeDecodeError escaped load_cifar when batches.meta held a non-UTF-8 class name."""
    names = [f"c{i}".encode() for i in range(10)]
    names[3] = b"\xff\xfe"
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    with pytest.raises(DataError, match="batches.meta"):
        load_cifar(tmp_path, train=False)


def _dds_with_unknown_flags(path):
    """DDS bytes (PIL sniffs content, not the extension) whose pixel-format flags PIL cannot handle."""
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="DDS")
    data = bytearray(buf.getvalue())
    data[80:84] = struct.pack("<I", 512)
    path.write_bytes(bytes(data))


def test_any_decoder_failure_is_a_data_error(tmp_path):
    """NotImplementedError from PIL's DDS decoder escaped read_image for a file named .png."""
    from shiftkit.data import load_image_folder

    for cls in ("a", "b"):
        (tmp_path / "d1" / cls).mkdir(parents=True)
        from PIL import Image

        Image.new("RGB", (8, 8)).save(tmp_path / "d1" / cls / "ok.png")
    _dds_with_unknown_flags(tmp_path / "d1" / "b" / "x.png")
    with pytest.raises(DataError, match="x.png.*NotImplementedError"):
        load_image_folder(tmp_path, size=8)


def test_decompression_bomb_image_is_refused_before_decoding(tmp_path):
    """A 9500x9500 PNG of 11 kB (past PIL's 89M-pixel threshold) was decoded to gigabytes of RGB."""
    from PIL import Image

    from shiftkit.data._images import read_image

    path = tmp_path / "bomb.png"
    Image.new("1", (9500, 9500)).save(path)
    tracemalloc.start()
    try:
        with pytest.warns(Image.DecompressionBombWarning), pytest.raises(DataError, match="9500x9500"):
            read_image(path, size=8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
