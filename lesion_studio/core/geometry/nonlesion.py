"""P0 §III-A non-lesion masks: holes placed in lesion-free tissue, used to remove lesions.

P0 picks the top-left of each non-stone mask crop at random in a lesion-free region, with a
width `wm` uniform in [10, 50] px, and then cuts the 3·wm context around it. P0 does not
describe the hole's shape; lesion-studio uses a disc of diameter `wm / 1.2`, the same
hole-to-crop ratio that P0 Eq. 1 gives lesion masks, so both kinds of training pairs look alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.crops import Box, lesion_bbox

#: P0 §III-A: the non-stone mask width is drawn uniformly in [10, 50] px.
P0_NONLESION_WIDTH_PX = (10, 50)
#: P0 Eq. 1: a mask crop is 1.2x the lesion; used here as crop-to-hole ratio.
P0_CROP_TO_LESION = 1.2


def disc(diameter_px: float) -> np.ndarray:
    """A filled disc, bool `(n, n)` with `n = ceil(diameter_px)`, pixel centres within radius."""
    n = max(int(math.ceil(diameter_px)), 1)
    centre = (n - 1) / 2.0
    r = np.arange(n) - centre
    radius = max(diameter_px / 2.0, 0.5)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2 + 1e-9


@dataclass(frozen=True)
class NonLesionMask:
    """A non-lesion hole: its square mask crop (P0's `wm`, top-left) and the hole inside it."""

    row0: int
    col0: int
    width_px: int  # P0's wm
    hole: np.ndarray  # (width_px, width_px) bool, the disc centred in the crop

    @property
    def mask_crop(self) -> Box:
        return Box(float(self.row0), float(self.col0), float(self.width_px), float(self.width_px))


def sample_nonlesion_mask(
    rng: np.random.Generator,
    lesion_free: np.ndarray,
    *,
    width_range_px: tuple[int, int] = P0_NONLESION_WIDTH_PX,
) -> NonLesionMask:
    """Draw a non-lesion mask whose whole `wm`-square lies in `lesion_free` (bool `(H, W)`).

    `wm ~ U{width_range_px}` (P0 §III-A, inclusive integers); when the drawn width fits
    nowhere, it is redrawn among the widths that fit. The top-left is uniform over all
    positions where the square fits. Raises MaskError when not even the smallest width fits.
    """
    free = np.asarray(lesion_free, dtype=bool)
    low, high = int(width_range_px[0]), int(width_range_px[1])
    if low < 1 or high < low:
        raise MaskError(f"invalid non-lesion width range {width_range_px}")
    blocked = (~free).astype(np.int32)
    integral = np.pad(blocked.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def valid_top_lefts(width: int) -> np.ndarray:
        # (r, c) is valid when free[r:r+w, c:c+w] is all True: a w×w box sum of blocked == 0
        if width > free.shape[0] or width > free.shape[1]:
            return np.zeros((0, 2), dtype=np.int64)
        sums = (
            integral[width:, width:] - integral[:-width, width:]
            - integral[width:, :-width] + integral[:-width, :-width]
        )
        return np.argwhere(sums == 0)

    width = int(rng.integers(low, high + 1))  # P0 §III-A: U[10, 50] px
    valid = valid_top_lefts(width)
    if valid.size == 0:
        # the drawn width does not fit: draw again among the widths that do (fitting is
        # monotone in the width, so bisect for the largest one)
        lo, hi = low - 1, width - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if valid_top_lefts(mid).size:
                lo = mid
            else:
                hi = mid - 1
        if lo < low:
            raise MaskError(f"no lesion-free square of {low} px fits in the allowed region")
        width = int(rng.integers(low, lo + 1))
        valid = valid_top_lefts(width)
    row0, col0 = valid[int(rng.integers(len(valid)))]
    hole_d = width / P0_CROP_TO_LESION
    hole = np.zeros((width, width), dtype=bool)
    d = disc(hole_d)
    off = (width - d.shape[0]) // 2
    hole[off : off + d.shape[0], off : off + d.shape[1]] = d
    return NonLesionMask(row0=int(row0), col0=int(col0), width_px=width, hole=hole)


def removal_hole(lesion_mask: np.ndarray, *, margin_px: int = 2) -> tuple[np.ndarray, int, int]:
    """A disc that covers a lesion with `margin_px` to spare: `(hole, row0, col0)` in image px.

    Used to remove an existing lesion (P0 §IV-A): the hole is centred on the lesion's box and
    its diameter is the box diagonal plus twice the margin, so every lesion pixel is inside.
    """
    box = lesion_bbox(lesion_mask)
    diagonal = math.hypot(box.height, box.width)
    hole = disc(diagonal + 2 * margin_px)
    centre_r, centre_c = box.centre_rc
    row0 = int(math.floor(centre_r - hole.shape[0] / 2.0 + 0.5))
    col0 = int(math.floor(centre_c - hole.shape[1] / 2.0 + 0.5))
    return hole, row0, col0


def lesion_free_region(lesion_mask: np.ndarray, *, margin_px: int = 5) -> np.ndarray:
    """Pixels at least `margin_px` away from any lesion pixel (bool)."""
    lesion = np.asarray(lesion_mask, dtype=bool)
    if not lesion.any():
        return np.ones(lesion.shape, dtype=bool)
    if margin_px <= 0:
        return ~lesion
    return ndimage.distance_transform_edt(~lesion) > margin_px
