"""Pixel values of any stored dtype -> uint8, by the values' real range; never a silent wrap or clip.

The one conversion behind the image decoder (16-bit PNG, 32-bit int and float TIFF) and the IDX reader
(int8 / int16 / int32 / float32 / float64 payloads). The rules, decided once:

- uint8: as is. bool: 0 / 255.
- uint16 (a 16-bit image): the top 8 bits (v >> 8), whatever the values are: the bit depth is the range.
- other integers: values in 0..255 as they are; in 0..65535 the top 8 bits (16-bit data in a wider type);
  anything negative or past 65535 is refused.
- floats: NaN / Inf refused; values in [0, 1] scaled by 255 (the float-image convention); in [0, 255]
  rounded; anything else refused. No per-image min-max stretch: it would change every image's contrast
  differently and hide data that is simply wrong.

A refusal is one DataError naming the file, the dtype and the range found.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["to_uint8"]


def to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """`arr` as uint8 by the rules above; DataError naming `where` when its range has no such meaning."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # any byte order
        return (arr >> 8).astype(np.uint8)
    if arr.size == 0:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return (arr >> 8).astype(np.uint8)
        raise DataError(f"{where}: {arr.dtype.name} pixel values span [{lo}, {hi}]; expected 0..255 (8-bit) or "
                        "0..65535 (16-bit): refusing to wrap or clip them")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: {arr.dtype.name} pixel values include NaN/Inf")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 1:
            return np.rint(arr * 255.0).astype(np.uint8)
        if lo >= 0 and hi <= 255:
            return np.rint(arr).astype(np.uint8)
        raise DataError(f"{where}: {arr.dtype.name} pixel values span [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]: "
                        "refusing to clip them")
    raise DataError(f"{where}: pixel dtype {arr.dtype.name} is not an image type")
