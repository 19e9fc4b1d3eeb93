"""P0 §III-A non-lesion masks: holes placed in lesion-free tissue, used to remove lesions.

P0 picks the top-left of each non-stone mask crop at random in a lesion-free region, with a
width `wm` uniform in [10, 50] px, and then cuts the 3·wm context around it. P0 does not
describe the hole's shape; lesion-studio uses a disc of diameter `wm / 1.2`, the same
hole-to-crop ratio that P0 Eq. 1 gives lesion masks, so both kinds of training pairs look alike.

`shaped_hole` draws the holes the "remove" training objective uses inside such a square:
squares, discs, ellipses and lobulated (dilated lesion-like) outlines, so training holes look
like the holes `removal_hole` cuts around real lesions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.crops import Box, lesion_bbox
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")
ndimage = lazy_import("scipy.ndimage")

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


#: Hole outlines `shaped_hole` draws, and how often when none is asked for: mostly ellipses
#: and lobulated outlines, as `removal_hole` (the lesion grown by a margin) makes them.
HOLE_SHAPES = ("square", "disc", "ellipse", "lobulated")
HOLE_SHAPE_WEIGHTS = (0.15, 0.15, 0.3, 0.4)
_FINE_GRID_PX = 192  # resolution at which ellipse and lobulated outlines are drawn before resizing


def _outline_on_fine_grid(rng: np.random.Generator, shape: str) -> np.ndarray:
    """An ellipse or a dilated lobulated lesion outline on a fine grid (bool, unit radius ~ 1)."""
    n = _FINE_GRID_PX
    step = 4.0 / n  # the grid spans [-2, 2]^2
    coords = (np.arange(n, dtype=np.float64) + 0.5) * step - 2.0
    rows, cols = coords[:, None], coords[None, :]
    angle = float(rng.uniform(0.0, math.pi))
    c, s = math.cos(angle), math.sin(angle)
    u = cols * c + rows * s
    v = -cols * s + rows * c
    if shape == "ellipse":
        ratio = float(rng.uniform(0.5, 0.9))  # minor / major axis
        return u * u + (v / ratio) ** 2 <= 1.0
    # lobulated: an elongated outline with a few smooth lobes (like the phantom lesions),
    # then dilated, as `removal_hole` grows a lesion into the hole that removes it
    elongation = float(rng.uniform(1.0, 1.4))
    amps = rng.uniform(0.05, 0.2, 3)
    phases = rng.uniform(0.0, 2.0 * math.pi, 3)
    dilation = float(rng.uniform(0.1, 0.3))
    uu, vv = u / elongation * 0.8, v * elongation * 0.8
    theta = np.arctan2(vv, uu)
    wobble = np.ones_like(theta)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=2):
        wobble += amp * np.cos(k * theta + phase)
    core = np.sqrt(uu * uu + vv * vv) / wobble <= 1.0
    return ndimage.distance_transform_edt(~core) * step <= dilation


def shaped_hole(rng: np.random.Generator, width_px: int, shape: str | None = None) -> np.ndarray:
    """A `(width_px, width_px)` bool hole whose longer extent spans the whole width.

    `shape` is one of `HOLE_SHAPES` (drawn with `HOLE_SHAPE_WEIGHTS` when None). Non-lesion
    holes of varied outline keep a removal model from learning one hole shape, and look like
    the holes `removal_hole` cuts around real lesions (P0 is silent on the shape).
    """
    w = int(width_px)
    if w < 1:
        raise MaskError(f"a hole needs a positive width, got {width_px}")
    if shape is None:
        shape = HOLE_SHAPES[int(rng.choice(len(HOLE_SHAPES), p=HOLE_SHAPE_WEIGHTS))]
    if shape not in HOLE_SHAPES:
        raise MaskError(f"unknown hole shape {shape!r}; expected one of {HOLE_SHAPES}")
    if shape == "square":
        return np.ones((w, w), dtype=bool)
    if shape == "disc":
        return disc(w)
    fine = _outline_on_fine_grid(rng, shape)
    box = lesion_bbox(fine)
    r0, c0, h, wd = int(box.row0), int(box.col0), int(box.height), int(box.width)
    crop = fine[r0 : r0 + h, c0 : c0 + wd].astype(np.float32)
    scale = w / max(h, wd)
    out_h, out_w = max(int(round(h * scale)), 1), max(int(round(wd * scale)), 1)
    small = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA) >= 0.5
    if not small.any():  # a tiny hole: keep at least its centre pixel
        small[out_h // 2, out_w // 2] = True
    hole = np.zeros((w, w), dtype=bool)
    top, left = (w - out_h) // 2, (w - out_w) // 2
    hole[top : top + out_h, left : left + out_w] = small
    return hole


def removal_hole(lesion_mask: np.ndarray, *, margin_px: int = 2) -> tuple[np.ndarray, int, int]:
    """The lesion grown by `margin_px` (its holes filled): `(hole, row0, col0)` in image px.

    Used to remove an existing lesion (P0 §IV-A). The hole follows the lesion's outline, so
    the fill replaces the lesion and its blurred edge but as little healthy tissue as
    possible (a disc over the bounding box's diagonal made the fill much larger than the
    lesion and left a visible disc).
    """
    box = lesion_bbox(lesion_mask)
    pad = int(margin_px) + 1
    r0, c0 = int(box.row0) - pad, int(box.col0) - pad
    rows, cols = int(box.height) + 2 * pad, int(box.width) + 2 * pad
    full = np.asarray(lesion_mask, dtype=bool)
    local = np.zeros((rows, cols), dtype=bool)
    src_r0, src_c0 = max(r0, 0), max(c0, 0)
    src_r1, src_c1 = min(r0 + rows, full.shape[0]), min(c0 + cols, full.shape[1])
    local[src_r0 - r0 : src_r1 - r0, src_c0 - c0 : src_c1 - c0] = full[src_r0:src_r1, src_c0:src_c1]
    if margin_px > 0:
        yy, xx = np.mgrid[-margin_px : margin_px + 1, -margin_px : margin_px + 1]
        local = ndimage.binary_dilation(local, structure=(yy**2 + xx**2) <= margin_px**2 + 0.5)
    hole = ndimage.binary_fill_holes(local)
    return hole, r0, c0


def lesion_free_region(lesion_mask: np.ndarray, *, margin_px: int = 5) -> np.ndarray:
    """Pixels at least `margin_px` away from any lesion pixel (bool)."""
    lesion = np.asarray(lesion_mask, dtype=bool)
    if not lesion.any():
        return np.ones(lesion.shape, dtype=bool)
    if margin_px <= 0:
        return ~lesion
    return ndimage.distance_transform_edt(~lesion) > margin_px
