"""A real CT nodule pasted into a CT patch in Hounsfield units (SPEC §4.2).

The nodule's axial slice gets the pose the engine gave its bank mask (flips, then rotation,
as `rotate_flip_mask`), is resampled onto the footprint's bounding box (the engine already
scaled the footprint to the requested diameter) and replaces the patch inside the footprint
in HU: the nodule's own texture and partial-volume edge, a Gaussian-softened edge (no
staircase), and the surrounding lung kept. Outside the footprint the result is never darker
than the background (no halo). A final check keeps every insertion denser than its
surroundings: if the footprint's mean is not `MIN_CONTRAST_HU` above a ring around it (e.g.
a ground-glass nodule over soft tissue), the nodule is raised by the difference.

Alpha blending was chosen over Poisson cloning: gradient-domain cloning carries the source's
nodule-to-lung step onto any background, so a nodule placed on soft tissue ends up at bone-like
HU, while HU replacement keeps a solid nodule at solid-tissue HU as in real scans.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.mask_transforms import flip_mask, rotate_mask

#: Sigma (px) of the Gaussian that softens the footprint's edge.
EDGE_SIGMA_PX = 0.7
#: The inserted nodule's mean must exceed the ring around it by at least this much.
MIN_CONTRAST_HU = 100.0
#: The ring used for the contrast check: pixels 2-5 px outside the footprint.
RING_GAP_PX, RING_WIDTH_PX = 2, 3


def _rotation_matrix(shape: tuple[int, int], rotation_deg: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The affine matrix and output size that `rotate_mask(expand=True)` uses."""
    h, w = shape
    theta = math.radians(rotation_deg)
    cos_t, sin_t = abs(math.cos(theta)), abs(math.sin(theta))
    new_w = w + 2 * int(math.ceil(max(w * cos_t + h * sin_t - w, 0.0) / 2.0 + 1))
    new_h = h + 2 * int(math.ceil(max(w * sin_t + h * cos_t - h, 0.0) / 2.0 + 1))
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(rotation_deg), 1.0)
    matrix[0, 2] += (new_w - w) / 2.0
    matrix[1, 2] += (new_h - h) / 2.0
    return matrix, (new_h, new_w)


def pose_view(
    image: np.ndarray, mask: np.ndarray, *, rotation_deg: float, flip_vertical: bool, flip_horizontal: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Flip then rotate an image and its mask exactly as `rotate_flip_mask` poses a mask."""
    image = np.asarray(image, dtype=np.float32)
    if flip_vertical:
        image = image[::-1, :]
    if flip_horizontal:
        image = image[:, ::-1]
    image = np.ascontiguousarray(image)
    mask = flip_mask(mask, flip_vertical=flip_vertical, flip_horizontal=flip_horizontal)
    if rotation_deg == 0:
        return image, mask
    matrix, (new_h, new_w) = _rotation_matrix(image.shape, rotation_deg)
    posed = cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return posed, rotate_mask(mask, rotation_deg, expand=True)


def resample_to_footprint(
    image: np.ndarray, mask: np.ndarray, footprint: np.ndarray
) -> np.ndarray:
    """Map a posed view onto the patch so its mask's box lands on the footprint's box.

    Returns a float32 image the size of `footprint`; parts beyond the view repeat its edge.
    Upsampling is bicubic (clipped to the view's range), downsampling is pre-smoothed.
    """
    footprint = np.asarray(footprint, dtype=bool)
    if not footprint.any() or not np.asarray(mask).any():
        raise MaskError("cannot place a lesion on an empty footprint or from an empty mask")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    frows, fcols = np.flatnonzero(footprint.any(axis=1)), np.flatnonzero(footprint.any(axis=0))
    sy = (rows[-1] - rows[0] + 1) / float(frows[-1] - frows[0] + 1)  # source px per patch px
    sx = (cols[-1] - cols[0] + 1) / float(fcols[-1] - fcols[0] + 1)
    src = np.asarray(image, dtype=np.float32)
    if max(sy, sx) > 1.2:  # shrinking: smooth first so the texture does not alias
        src = cv2.GaussianBlur(src, (0, 0), sigmaX=max(0.4 * sx, 0.01), sigmaY=max(0.4 * sy, 0.01))
    # patch (x, y) -> source: x_src = sx * (x - fc0 + 0.5) - 0.5 + c0, likewise for y
    matrix = np.array([
        [sx, 0.0, cols[0] + sx * (0.5 - fcols[0]) - 0.5],
        [0.0, sy, rows[0] + sy * (0.5 - frows[0]) - 0.5],
    ], dtype=np.float64)
    out = cv2.warpAffine(src, matrix, (footprint.shape[1], footprint.shape[0]),
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out, float(src.min()), float(src.max())).astype(np.float32)


def soft_alpha(footprint: np.ndarray, sigma_px: float = EDGE_SIGMA_PX) -> np.ndarray:
    """The footprint softened by a Gaussian: ~1 inside, ~0.5 at the edge, 0 a few px out."""
    return ndimage.gaussian_filter(np.asarray(footprint, dtype=np.float32), sigma_px).astype(np.float32)


def contrast_ring(footprint: np.ndarray) -> np.ndarray:
    """Pixels 2-5 px outside the footprint: the local background for contrast checks."""
    outside = ndimage.distance_transform_edt(~np.asarray(footprint, dtype=bool))
    return (outside > RING_GAP_PX) & (outside <= RING_GAP_PX + RING_WIDTH_PX)


def insert_ct_nodule(
    background_hu: np.ndarray,
    footprint: np.ndarray,
    nodule_hu: np.ndarray,
    nodule_mask: np.ndarray,
    *,
    rotation_deg: float = 0.0,
    flip_vertical: bool = False,
    flip_horizontal: bool = False,
) -> np.ndarray:
    """Paste a nodule's axial HU slice (any size, its mask) over `footprint` of a HU patch.

    The pose must be the one applied to the nodule's bank mask; the footprint is the posed,
    size-modulated mask at patch pixels. Returns the patch (float32 HU).
    """
    bg = np.asarray(background_hu, dtype=np.float32)
    footprint = np.asarray(footprint, dtype=bool)
    if bg.shape != footprint.shape:
        raise MaskError(f"patch {bg.shape} and footprint {footprint.shape} differ in shape")
    posed, posed_mask = pose_view(
        nodule_hu, nodule_mask, rotation_deg=rotation_deg,
        flip_vertical=flip_vertical, flip_horizontal=flip_horizontal,
    )
    rendered = resample_to_footprint(posed, posed_mask, footprint)
    # inside: the nodule's HU; outside: only what is denser than the background (its own
    # partial-volume edge), so the soft edge never draws a dark halo
    source = np.where(footprint, rendered, np.maximum(rendered, bg))
    alpha = soft_alpha(footprint)
    alpha[footprint] = np.maximum(alpha[footprint], 0.5)
    out = alpha * source + (1.0 - alpha) * bg
    ring = contrast_ring(footprint)
    if ring.any():
        for _ in range(2):  # the ring barely sees alpha; a second pass absorbs that
            deficit = MIN_CONTRAST_HU - float(out[footprint].mean() - out[ring].mean())
            if deficit <= 0:
                break
            core = alpha * footprint
            out = out + core * np.float32(deficit / max(float(core[footprint].mean()), 1e-3))
    return out.astype(np.float32)
