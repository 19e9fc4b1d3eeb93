"""Generator inputs built from a crop and its mask: P3's texture input and P1's outpaint region.

Both work on crops already normalized to the model's value range (the only place where
images leave physical units); masks are bool `(H, W)`.
"""

from __future__ import annotations

import numpy as np
from lesion_studio.lazy import lazy_import

ndimage = lazy_import("scipy.ndimage")


def texture_input(
    image: np.ndarray, mask: np.ndarray, *, fill_value: float = 1.0
) -> np.ndarray:
    """P3 §III-C: `I_input = I ⊙ (1 − M) + M`, with `M` concatenated: `(2, H, W)` float32.

    `fill_value` is what the hole holds (P3's all-ones `1`, the top of a [0, 1] or [-1, 1]
    range); grayscale gives 2 channels (image, mask).
    """
    image = np.asarray(image, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    if image.shape != m.shape or image.ndim != 2:
        raise ValueError(f"image {image.shape} and mask {m.shape} must be the same (H, W)")
    m_f = m.astype(np.float32)
    filled = image * (1.0 - m_f) + np.float32(fill_value) * m_f  # P3 §III-C
    return np.stack([filled, m_f]).astype(np.float32)


def outpaint_region(
    lesion_mask: np.ndarray, *, keep_margin_px: int = 0, region: np.ndarray | None = None,
    context_fraction: float = 0.0,
) -> np.ndarray:
    """P1 §3.2: the pixels to regenerate — everything but the lesion (bool, True = regenerate).

    `keep_margin_px` grows the kept lesion by that many pixels so its edge survives too;
    `region` (bool) restricts regeneration to part of the crop (default: the whole crop);
    `context_fraction` keeps the crop's outer band (`context_band_px` of its shorter side) as
    context, as an outpainter trained with `model.context_fraction` expects.
    """
    keep = np.asarray(lesion_mask, dtype=bool)
    if keep_margin_px > 0:
        keep = ndimage.binary_dilation(
            keep, structure=np.ones((3, 3), dtype=bool), iterations=int(keep_margin_px)
        )
    regenerate = ~keep
    if region is not None:
        regenerate &= np.asarray(region, dtype=bool)
    if context_fraction > 0:
        regenerate &= inside_band(keep.shape, context_band_px(min(keep.shape), context_fraction))
    return regenerate


def context_band_px(side_px: int, fraction: float) -> int:
    """Width of the crop's outer band kept as context when outpainting: `fraction` of the side
    (0: none, P1's literal whole-crop outpainting)."""
    return int(round(max(0.0, float(fraction)) * int(side_px)))


def inside_band(shape: tuple[int, int], band_px: int) -> np.ndarray:
    """True inside the crop less an outer band of `band_px` (the whole crop when 0)."""
    inner = np.zeros(tuple(int(v) for v in shape), dtype=bool)
    b = int(band_px)
    if 2 * b >= min(inner.shape):
        raise ValueError(f"a {b} px context band leaves nothing of a {inner.shape} crop")
    inner[b : inner.shape[0] - b, b : inner.shape[1] - b] = True
    return inner


def compose(original: np.ndarray, generated: np.ndarray, regenerate: np.ndarray) -> np.ndarray:
    """Generated pixels where `regenerate` is True, original pixels (bit-identical) elsewhere."""
    original = np.asarray(original)
    generated = np.asarray(generated, dtype=original.dtype)
    return np.where(np.asarray(regenerate, dtype=bool), generated, original)
