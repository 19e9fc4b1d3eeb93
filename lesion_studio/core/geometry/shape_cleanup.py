"""Lesion shape cleanup: one 8-connected component, no holes, a smooth outline.

Shapes enter lesion-studio from several places (built-in blobs, mask-bank entries, shape
generator samples, drawn lesions), and each may carry specks, pinholes or pixel staircases
from thresholding and nearest-neighbour resizing. A lesion to synthesize is one solid region,
so every shape is cleaned where it enters, with the same rules everywhere:

1. keep the largest 8-connected component (ties: the first in label order);
2. fill interior holes (background not 4-connected to the border: the dual of 8-connected
   foreground);
3. smooth the outline: a Gaussian blur of the float mask with sigma ≈ 1.5 % of the shape's
   area-equivalent diameter (at least 0.7 px), thresholded at 0.5. A 0.5 threshold of a
   blurred step keeps straight edges in place, so the area and the lobulation survive; only
   pixel stairs and one-pixel spurs go;
4. take the largest component and fill holes again, so the result is guaranteed clean.

If smoothing would change the area by more than `MAX_SMOOTH_AREA_CHANGE` (tiny shapes, a few
pixels across) the unsmoothed, topologically clean mask is returned instead.
"""

from __future__ import annotations

import math

import numpy as np

from lesion_studio.core.errors import MaskError
from lesion_studio.lazy import lazy_import

ndimage = lazy_import("scipy.ndimage")

#: Smoothing sigma as a fraction of the shape's area-equivalent diameter ...
SMOOTH_FRACTION_OF_DIAMETER = 0.015
#: ... and its floor in pixels (below ~0.7 px a blur cannot remove a one-pixel stair).
MIN_SMOOTH_SIGMA_PX = 0.7
#: Smoothing is refused when it would change the area by more than this fraction.
MAX_SMOOTH_AREA_CHANGE = 0.05

_EIGHT = np.ones((3, 3), dtype=bool)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"expected a 2D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False) if mask.dtype == bool else mask > 0


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a binary mask (bool); empty in, empty out."""
    mask = _as_mask(mask)
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every background region not 4-connected to the border (bool)."""
    return ndimage.binary_fill_holes(_as_mask(mask))


def _topology_clean(mask: np.ndarray) -> np.ndarray:
    return fill_holes(largest_component(mask))


def default_smooth_sigma(mask: np.ndarray) -> float:
    """Sigma (px) used when `clean_shape` gets no `smooth_px`: ~1.5 % of the diameter, ≥ 0.7."""
    area = float(np.count_nonzero(mask))
    diameter = math.sqrt(4.0 * area / math.pi)
    return max(MIN_SMOOTH_SIGMA_PX, SMOOTH_FRACTION_OF_DIAMETER * diameter)


def clean_shape(mask: np.ndarray, *, smooth_px: float | None = None) -> np.ndarray:
    """A lesion shape made solid and smooth: largest component, no holes, smoothed outline.

    `smooth_px` is the Gaussian sigma in pixels; None picks `default_smooth_sigma`, 0 skips
    smoothing (topology only). Bool out, same shape as the input. Raises MaskError for an
    empty or non-2D mask.
    """
    mask = _as_mask(mask)
    if not mask.any():
        raise MaskError("the mask is empty: there is no shape to clean")
    solid = _topology_clean(mask)
    sigma = default_smooth_sigma(solid) if smooth_px is None else float(smooth_px)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"smooth_px must be a non-negative number, got {smooth_px!r}")
    if sigma == 0:
        return solid
    blurred = ndimage.gaussian_filter(solid.astype(np.float32), sigma, mode="constant", cval=0.0)
    smooth = blurred >= 0.5
    if not smooth.any():
        return solid
    smooth = _topology_clean(smooth)
    area, new_area = int(np.count_nonzero(solid)), int(np.count_nonzero(smooth))
    if abs(new_area - area) > MAX_SMOOTH_AREA_CHANGE * area:
        return solid  # too small to smooth without losing it
    return smooth


def is_clean(mask: np.ndarray) -> bool:
    """True when the mask is one 8-connected component without holes (empty: False)."""
    mask = _as_mask(mask)
    _, n = ndimage.label(mask, structure=_EIGHT)
    if n != 1:
        return False
    return bool(np.array_equal(ndimage.binary_fill_holes(mask), mask))
