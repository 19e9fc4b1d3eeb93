"""Built-in lesion shapes for when no shape generator or mask bank is loaded.

Lobulated blobs: a radius `r(θ) = 1 + Σ a_k cos(kθ + φ_k)` with small random harmonics, the
look of nodules and stones in the papers' figures. They are geometric, not learned, and the
shape picker says so; a trained P3 shape generator replaces them when loaded. Each blob goes
through `clean_shape` like every other shape source, so its outline is smoothed the same way.
"""

from __future__ import annotations

import numpy as np

from lesion_studio.core.geometry.shape_cleanup import clean_shape
from lesion_studio.lazy import lazy_import

_skdraw = lazy_import("skimage.draw")

BUILTIN_SHAPE_PX = 128


def lobulated_shape(seed: int, size_px: int = BUILTIN_SHAPE_PX) -> np.ndarray:
    """One deterministic blob, `(size_px, size_px)` bool, diameter about 60 % of the canvas."""
    rng = np.random.default_rng(int(seed))
    theta = np.linspace(0.0, 2.0 * np.pi, 180, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += rng.uniform(0.0, 0.16 / (k - 1)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    elongation = rng.uniform(0.75, 1.0)
    scale = 0.3 * size_px
    rows = size_px / 2 + scale * radius * np.sin(theta) * elongation
    cols = size_px / 2 + scale * radius * np.cos(theta)
    mask = np.zeros((size_px, size_px), bool)
    rr, cc = _skdraw.polygon(rows, cols, mask.shape)
    mask[rr, cc] = True
    return clean_shape(mask)


def builtin_shapes(n: int, seed: int) -> list[np.ndarray]:
    """`n` blobs from seeds `seed .. seed + n - 1`."""
    return [lobulated_shape(seed + i) for i in range(n)]
