"""Classical hole filling (SPEC §4.1): OpenCV TELEA / Navier-Stokes inpainting and a ring mean.

Runs on the image's own values (HU, 8-bit, 12/16-bit, any float units): the crop around the
hole is mapped linearly onto 0..65535 uint16 for `cv2.inpaint` (which misbehaves on float32
data in small ranges such as [0, 1]) and mapped back, so the quantisation error is at most
1/65535 of the crop's value range. Pixels outside the hole are returned bit-identical.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import ConfigError, MaskError

FILL_METHODS = ("telea", "navier-stokes", "ring-mean")
_CV_FLAGS = {"telea": cv2.INPAINT_TELEA, "navier-stokes": cv2.INPAINT_NS}
_U16_MAX = 65535.0
#: Width of the ring of known pixels used by the ring mean (px).
RING_WIDTH_PX = 2


def ring_around(hole: np.ndarray, width_px: int = RING_WIDTH_PX, gap_px: int = 0) -> np.ndarray:
    """The pixels within `gap_px < distance <= gap_px + width_px` outside a bool mask."""
    hole = np.asarray(hole, dtype=bool)
    outside = ndimage.distance_transform_edt(~hole)
    return (outside > gap_px) & (outside <= gap_px + width_px)


def _check(pixels: np.ndarray, hole: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method not in FILL_METHODS:
        raise ConfigError(f"unknown fill method {method!r}; expected one of {FILL_METHODS}")
    pixels = np.asarray(pixels)
    hole = np.asarray(hole, dtype=bool)
    if pixels.ndim != 2 or pixels.shape != hole.shape:
        raise MaskError(f"image {pixels.shape} and hole {hole.shape} must be the same 2D shape")
    return pixels, hole


def fill_hole(
    pixels: np.ndarray, hole: np.ndarray, method: str = "telea", radius_px: float = 3.0
) -> np.ndarray:
    """Fill `hole` (bool, same shape) of a 2D image from its surroundings; float32 out.

    `method` is "telea" or "navier-stokes" (`cv2.inpaint`, neighbourhood `radius_px`), or
    "ring-mean" (the mean of a 2-px ring just outside the hole: the trivial floor). Only hole
    pixels change; everything else equals `pixels` converted to float32.
    """
    pixels, hole = _check(pixels, hole, method)
    out = pixels.astype(np.float32, copy=True)
    if not hole.any():
        return out
    known = ~hole
    if not known.any():
        raise MaskError("the hole covers the whole image: nothing to fill it from")
    if method == "ring-mean":
        ring = ring_around(hole) & known
        out[hole] = np.float32(out[ring].mean())
        return out

    # a local crop: the hole's box plus enough context for the inpainting neighbourhood
    pad = int(math.ceil(radius_px)) + 4
    rows = np.flatnonzero(hole.any(axis=1))
    cols = np.flatnonzero(hole.any(axis=0))
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, hole.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, hole.shape[1])
    crop = out[r0:r1, c0:c1].astype(np.float64)
    crop_hole = hole[r0:r1, c0:c1]
    crop_known = ~crop_hole
    if not crop_known.any():
        crop_known = known[r0:r1, c0:c1]
    finite = crop_known & np.isfinite(crop)
    lo = float(crop[finite].min()) if finite.any() else 0.0
    hi = float(crop[finite].max()) if finite.any() else 0.0
    span = hi - lo if hi > lo else 1.0
    scaled = np.where(finite, (crop - lo) / span * _U16_MAX, 0.0)
    u16 = np.clip(np.rint(scaled), 0, _U16_MAX).astype(np.uint16)
    filled = cv2.inpaint(u16, crop_hole.astype(np.uint8), float(radius_px), _CV_FLAGS[method])
    values = filled.astype(np.float64) / _U16_MAX * span + lo
    region = out[r0:r1, c0:c1]
    region[crop_hole] = values[crop_hole].astype(np.float32)
    return out
