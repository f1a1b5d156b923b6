"""Hostile inputs written from the classes of issue 13, one generator per class.

Each generator writes its files under `root` and returns [(name, path)]: the path is what a user would
hand to shiftkit (a checkpoint, a dataset folder). Nothing here mirrors a stored corpus file: every input
is built from the description of its class (a config lying about sizes, a tensor shape past 2^63, a FIFO,
a view or zip record that expands, a pickle that allocates through an allowed global, a folder name that
is not UTF-8, a dataset of one class).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save

__all__ = ["CLASSES", "config_inputs", "shape_inputs", "special_file_inputs", "pt_inputs", "cifar_inputs",
           "folder_inputs", "markup_inputs", "safetensors_bytes"]


def _tiny_state() -> tuple[dict, dict[str, str]]:
    from shiftkit import models
    from shiftkit.checkpoints import model_metadata

    torch.manual_seed(0)
    net = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
    return {k: v.contiguous() for k, v in net.state_dict().items()}, model_metadata(net)


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict[str, str]) -> bytes:
    """A safetensors file written by hand, so shapes the library would never write can be declared."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def config_inputs(root: Path) -> list[tuple[str, Path]]:
    """Metadata that rebuilds a model: sizes negative, huge, not integers; JSON nested deep; lies."""
    state, meta = _tiny_state()
    cfg = json.loads(meta["config"])
    deep = "[" * 100_000 + "]" * 100_000
    cases = {
        "negative num_classes": {"config": json.dumps({**cfg, "num_classes": -3}), "num_classes": "-3"},
        "num_classes 10^12": {"config": json.dumps({**cfg, "num_classes": 10**12}), "num_classes": str(10**12)},
        "width in the billions": {"config": json.dumps({**cfg, "width": 3_000_000_000})},
        "width 2^40 (within range of JSON ints)": {"config": json.dumps({**cfg, "width": 1 << 40})},
        "width 500000 (in range, model too big for the file)": {"config": json.dumps({**cfg, "width": 500_000})},
        "width 4.5": {"config": json.dumps({**cfg, "width": 4.5})},
        "width a string": {"config": json.dumps({**cfg, "width": "wide"})},
        "width NaN": {"config": json.dumps({**cfg}).replace('"width": 4', '"width": NaN')},
        "width -1": {"config": json.dumps({**cfg, "width": -1})},
        "in_chans 0": {"config": json.dumps({**cfg, "in_chans": 0})},
        "config nested 100k deep": {"config": deep},
        "config option nested 100k deep": {"config": json.dumps(cfg)[:-1] + ', "norm": ' + deep + "}"},
        "config a list": {"config": "[1, 2, 3]"},
        "config 4 MB": {"config": json.dumps({**cfg, "pad": "x" * (4 << 20)})},
        "num_classes not a number": {"num_classes": "ten"},
        "num_classes a float": {"num_classes": "4.5"},
        "num_classes disagrees with config": {"num_classes": "7"},
        "arch unknown": {"arch": "resnet9000"},
        "arch a path": {"arch": "../../etc/passwd"},
    }
    out = []
    for i, (name, change) in enumerate(cases.items()):
        path = root / f"config_{i:02d}.safetensors"
        path.write_bytes(st_save(state, metadata={**meta, **change}))
        out.append((name, path))
    return out


def shape_inputs(root: Path) -> list[tuple[str, Path]]:
    """Zero-size tensors whose other dimensions overflow, and shapes past what the data holds."""
    cases = {
        "zero-size, other dim 2^63": ("F32", [0, 1 << 63], b""),
        "zero-size, other dim 2^64-1": ("F32", [(1 << 64) - 1, 0], b""),
        "zero-size, dims 2^32 x 2^32 x 0": ("F32", [1 << 32, 1 << 32, 0], b""),
        "zero-size, 2^62 in a uint8 tensor": ("U8", [0, 1 << 62], b""),
        "shape product past 2^64 with data": ("U8", [1 << 33, 1 << 33], b"\0" * 8),
    }
    out = []
    for i, (name, tensor) in enumerate(cases.items()):
        path = root / f"shape_{i:02d}.safetensors"
        path.write_bytes(safetensors_bytes({"features.0.weight": tensor}, {"arch": "small_cnn"}))
        out.append((name, path))
    return out


def special_file_inputs(root: Path) -> list[tuple[str, Path]]:
    """Files that are not regular files, named like checkpoints (a FIFO would block an open() forever)."""
    out = []
    for suffix in (".pt", ".safetensors", ".pth"):
        fifo = root / f"fifo{suffix}"
        os.mkfifo(fifo)
        out.append((f"FIFO named *{suffix}", fifo))
    folder = root / "folder.pt"
    folder.mkdir()
    out.append(("folder named *.pt", folder))
    dev = root / "zero.pt"
    dev.symlink_to("/dev/zero")
    out.append(("symlink to /dev/zero named *.pt", dev))
    sock = root / "sock.safetensors"
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()
    out.append(("UNIX socket named *.safetensors", sock))
    return out


def _torch_zip(entries: dict[str, bytes], *, compress: set[str] = frozenset()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED)
    return buf.getvalue()


def _deflate_zeros(n: int) -> tuple[bytes, int]:
    """A raw deflate stream of n zero bytes (about n/1000 bytes) and the CRC-32 of those zeros."""
    comp, chunk, parts, crc, left = zlib.compressobj(9, zlib.DEFLATED, -15), b"\0" * (1 << 20), [], 0, n
    while left > 0:
        piece = chunk[:min(left, len(chunk))]
        parts.append(comp.compress(piece))
        crc, left = zlib.crc32(piece, crc), left - len(piece)
    return b"".join(parts) + comp.flush(), crc


def _zip_with_record(entries: dict[str, bytes], name: str, deflated: bytes, crc: int, inflated: int) -> bytes:
    """A zip of stored `entries` plus one deflated record `name` that claims `inflated` bytes, written by
    hand (zipfile would need the inflated bytes in memory)."""
    body = _torch_zip(entries)
    cd_at, end_at = body.find(b"PK\x01\x02"), body.rfind(b"PK\x05\x06")
    head, central, fname = body[:cd_at], body[cd_at:end_at], name.encode()
    size = min(inflated, 0xFFFFFFFF)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), size, len(fname), 0)
    cd = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(deflated), size,
                     len(fname), 0, 0, 0, 0, 0, len(head))
    central += cd + fname
    n = len(entries) + 1
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), len(head) + len(local) + len(fname)
                      + len(deflated), 0)
    return head + local + fname + deflated + central + end


def _zip_bomb(inflated: int, *, lying: bool = False) -> bytes:
    """torch.save's zip of one 4-float tensor whose storage record inflates to `inflated` zeros (or, lying,
    claims that size in its headers over 1 KiB of data)."""
    good = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, good)
    with zipfile.ZipFile(io.BytesIO(good.getvalue())) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    name = next(n for n in entries if n.endswith("/data/0"))
    deflated, crc = _deflate_zeros(1024 if lying else inflated)
    return _zip_with_record({k: v for k, v in entries.items() if k != name}, name, deflated, crc, inflated)


def _raw_pickle(ops: bytes) -> bytes:
    """A protocol-2 pickle of hand-written opcodes (what pickle.dumps would never write)."""
    return b"\x80\x02" + ops + b"."


def pt_inputs(root: Path) -> list[tuple[str, Path]]:
    """`.pt` files whose small storages back huge views, zip bombs, and pickles that allocate."""
    out = []

    def save(name: str, obj, fname: str) -> None:
        path = root / fname
        torch.save(obj, path)
        out.append((name, path))

    save("stride-0 view: 1 float as 10^10", {"w": torch.zeros(1).expand(10**10)}, "expand_1d.pt")
    save("stride-0 view: 4 floats as 4x10^9", {"w": torch.zeros(4).expand(10**9, 4)}, "expand_2d.pt")
    base = torch.zeros(1 << 18)  # 1 MiB
    save("one 1 MiB storage viewed 2000 times", {f"w{i}": base for i in range(2000)}, "shared_views.pt")
    save("state_dict wrapper with stride-0 view", {"state_dict": {"w": torch.zeros(1).expand(1 << 33)}}, "wrapped.pt")
    for name, size, lying in (("zip bomb: 512 MiB of zeros", 512 << 20, False),
                              ("zip record claiming 3 GiB over 1 KiB", 3 << 30, True)):
        path = root / f"bomb_{size >> 20}.pt"
        path.write_bytes(_zip_bomb(size, lying=lying))
        out.append((name, path))
    allocs = {
        "bytearray(3 GiB)": b"c__builtin__\nbytearray\n" + _GIB3 + b"\x85R",
        "torch.LongTensor(4e8)": b"ctorch\nLongTensor\nJ\x00\x84\xd7\x17\x85R",
        "legacy storage claiming 2^40 floats": b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
        b"X\x03\x00\x00\x00cpu\x8a\x06\x00\x00\x00\x00\x00\x01NtQ",
    }
    for i, (name, ops) in enumerate(allocs.items()):
        path = root / f"alloc_{i}.pt"
        path.write_bytes(_legacy_header() + _raw_pickle(ops) + _raw_pickle(b"]"))
        out.append((f"{name} in a legacy torch file", path))
        zipped = root / f"alloc_zip_{i}.pt"
        zipped.write_bytes(_torch_zip({"archive/data.pkl": _raw_pickle(ops), "archive/version": b"3\n"}))
        out.append((f"{name} in a torch zip", zipped))
    return out


_GIB3 = b"\x8a\x05\x00\x00\x00\xc0\x00"  # LONG1: 3 GiB


def _legacy_header() -> bytes:
    """The three small pickles that open a legacy (pre-zip) torch.save file: magic, protocol, sys info."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + pickle.dumps(sys_info, 2)


def cifar_inputs(root: Path) -> list[tuple[str, Path]]:
    """CIFAR-10 folders whose test batch is a pickle of a few dozen bytes that allocates gigabytes
    through an allowed global; batches.meta is valid. Returns the folders."""
    meta = pickle.dumps({b"label_names": [b"a", b"b"]}, 2)
    n = _GIB3
    recon = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    bombs = {
        "bytearray(3 GiB)": b"c__builtin__\nbytearray\n" + n + b"\x85R",
        "numpy.ndarray((3 GiB,)) called": b"cnumpy\nndarray\n" + n + b"\x85\x85R",
        "_reconstruct(ndarray, (3 GiB,), u1)": recon + n + b"\x85U\x01b\x87R",
        "dtype V3000000000 in _reconstruct": recon + b"K\x01\x85cnumpy\ndtype\nU\x0bV3000000000\x85R\x87R",
        "_reconstruct then BUILD with a 3 GiB object shape": recon + b"K\x00\x85U\x01b\x87R(K\x01" + n
        + b"\x85cnumpy\ndtype\nU\x02O8\x85R\x89]tb",
        "_codecs.encode of a short string": b"c_codecs\nencode\nX\x04\x00\x00\x00abcdX\x06\x00\x00\x00latin1\x86R",
    }
    out = []
    for i, (name, ops) in enumerate(bombs.items()):
        folder = root / f"cifar_{i}"
        folder.mkdir()
        (folder / "batches.meta").write_bytes(meta)
        for batch in ("data_batch_1", "test_batch"):  # what `data cifar10` reads first, and the test split
            (folder / batch).write_bytes(_raw_pickle(ops))
        out.append((name, folder))
    return out


def _png(path: Path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def folder_inputs(root: Path) -> list[tuple[str, Path]]:
    """Image-folder datasets: a domain or class folder whose name is not UTF-8; a single class."""
    out = []

    def tree(name: str, layout: dict[bytes, list[bytes]]) -> None:
        base = root / name
        for domain, classes in layout.items():
            for c in classes:
                d = os.path.join(os.fsencode(base), domain, c)
                os.makedirs(d)
                for k in range(4):
                    _png(Path(os.fsdecode(os.path.join(d, f"{k}.png".encode()))), 40 * k)
        out.append((name.replace("_", " "), base))

    tree("domain_name_latin1", {b"2001": [b"a", b"b"], b"caf\xe9": [b"a", b"b"]})
    tree("domain_name_invalid_bytes", {b"\xff\xfe": [b"a", b"b"], b"2002": [b"a", b"b"]})
    tree("class_name_not_utf8", {b"2001": [b"a", b"\xc3\x28"], b"2002": [b"a", b"b"]})
    tree("single_class", {b"2001": [b"only"], b"2002": [b"only"]})
    tree("single_class_one_domain", {b"2001": [b"only"]})
    return out


def markup_inputs(root: Path) -> list[tuple[str, Path]]:
    """Text from the file that a printer could choke on: rich markup in metadata, in a tensor name, in the
    file name; a metadata value nested 100,000 levels deep (a recursive pretty-printer)."""
    state, meta = _tiny_state()
    out = []
    cases = {
        "markup in metadata": (state, {**meta, "domain": "[/bold]", "notes": "[red]x[/blue]"}, "markup_meta.safetensors"),
        "markup in a tensor name": ({**state, "[/bold]": torch.zeros(1)}, meta, "markup_tensor.safetensors"),
        "markup in the file name": (state, meta, "[/red].safetensors"),  # a folder "[" holding "red].safetensors"
        "metadata value nested 100k deep": (state, {**meta, "notes": "[" * 100_000 + "]" * 100_000}, "deep_meta.safetensors"),
    }
    for name, (st, md, fname) in cases.items():
        path = root / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(st_save(st, metadata=md))
        out.append((name, path))
    return out


CLASSES = {
    "config": config_inputs, "shape": shape_inputs, "special_file": special_file_inputs, "pt": pt_inputs,
    "cifar": cifar_inputs, "folder": folder_inputs, "markup": markup_inputs,
}


def valid_inputs(root: Path) -> dict[str, Path]:
    """The valid counterpart of each kind of input (a checkpoint, a CIFAR folder, an image folder): the
    baseline a command's memory is measured against."""
    from shiftkit.checkpoints import save_checkpoint

    state, meta = _tiny_state()
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "model.safetensors", state, metadata=meta)
    cifar = root / "cifar"
    cifar.mkdir(exist_ok=True)
    (cifar / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, 2))
    rng = np.random.default_rng(0)
    for batch in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        data = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": [i % 2 for i in range(20)]}
        (cifar / batch).write_bytes(pickle.dumps(data, 2))
    images = root / "images"
    for domain in ("2001", "2002"):
        for c in ("a", "b"):
            (images / domain / c).mkdir(parents=True, exist_ok=True)
            for k in range(6):
                _png(images / domain / c / f"{k}.png", 40 * k + (c == "b") * 20)
    return {"ckpt": root / "model.safetensors", "cifar": cifar, "folder": images}
