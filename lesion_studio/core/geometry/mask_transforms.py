"""Rotation and flips of a lesion mask (P0 §IV-A: rotation U[−10°, 10°], vertical and
horizontal flips), done so that nothing is cut off and the area is kept."""

from __future__ import annotations

import math

import numpy as np
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")

#: P0 §IV-A: masks drawn from the bank are rotated by U[−10°, +10°].
P0_ROTATION_RANGE_DEG = (-10.0, 10.0)


def flip_mask(mask: np.ndarray, *, flip_vertical: bool, flip_horizontal: bool) -> np.ndarray:
    """Flip up-down (`flip_vertical`) and/or left-right (`flip_horizontal`); exact."""
    out = np.asarray(mask, dtype=bool)
    if flip_vertical:
        out = out[::-1, :]
    if flip_horizontal:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def rotate_mask(mask: np.ndarray, rotation_deg: float, *, expand: bool = True) -> np.ndarray:
    """Rotate a binary mask counter-clockwise (as displayed) about its centre; bool out.

    The mask is interpolated bilinearly as a coverage fraction and thresholded at 0.5, which
    keeps the area (nearest neighbour loses or duplicates edge pixels). With `expand` the
    canvas grows so no foreground is cut; otherwise the shape is kept.
    """
    mask = np.asarray(mask, dtype=bool)
    if rotation_deg == 0:
        return mask.copy()
    h, w = mask.shape
    if expand:
        theta = math.radians(rotation_deg)
        cos_t, sin_t = abs(math.cos(theta)), abs(math.sin(theta))
        # grow by an even number of pixels so the centre stays on the same sub-pixel position
        new_w = w + 2 * int(math.ceil(max(w * cos_t + h * sin_t - w, 0.0) / 2.0 + 1))
        new_h = h + 2 * int(math.ceil(max(w * sin_t + h * cos_t - h, 0.0) / 2.0 + 1))
    else:
        new_h, new_w = h, w
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(rotation_deg), 1.0)
    matrix[0, 2] += (new_w - w) / 2.0
    matrix[1, 2] += (new_h - h) / 2.0
    rotated = cv2.warpAffine(
        mask.astype(np.float32), matrix, (new_w, new_h),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )
    return rotated >= 0.5


def rotate_flip_mask(
    mask: np.ndarray,
    *,
    rotation_deg: float = 0.0,
    flip_vertical: bool = False,
    flip_horizontal: bool = False,
    expand: bool = True,
) -> np.ndarray:
    """Flips first, then rotation; bool out (the order is fixed so plans replay exactly)."""
    flipped = flip_mask(mask, flip_vertical=flip_vertical, flip_horizontal=flip_horizontal)
    return rotate_mask(flipped, rotation_deg, expand=expand)
