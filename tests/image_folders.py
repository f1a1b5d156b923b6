"""A folder of periods written as real PNG files: root/<period>/<class>/<i>.png, learnable and shifting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_periods(root: Path, *, periods: int = 3, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 12,
                  size: int = 20, seed: int = 0) -> Path:
    """Class c is a bright square in quadrant c on noise; each period shifts the background brightness."""
    rng = np.random.default_rng(seed)
    half = size // 2
    for p in range(periods):
        for c, name in enumerate(classes):
            folder = root / f"{2000 + p}" / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 90, (size, size, 3)).astype(np.int64) + 30 * p  # (H, W, 3)
                r, q = divmod(c % 4, 2)
                img[r * half:(r + 1) * half, q * half:(q + 1) * half] += 120
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root
