"""Pure shape rasterizers for the painting tools: numpy/skimage/OpenCV, no document state.

Coordinates are array coordinates of pixel centres: `(row, col)`, floats allowed, pixel
`(r, c)` covers `[r-0.5, r+0.5) x [c-0.5, c+0.5)`. Every function returns a *region*: the
half-open bbox `(row0, row1, col0, col1)` clipped to the plane and a boolean mask of that bbox,
so callers touch only the pixels near the tool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")
_skdraw = lazy_import("skimage.draw")

BBox = tuple[int, int, int, int]


def brush_radii_px(
    radius_px: float | None = None,
    radius_mm: float | None = None,
    plane_spacing_mm: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """`(radius_rows_px, radius_cols_px)` of a round brush given in px or in mm.

    A radius in mm becomes an ellipse in pixels when the spacing is anisotropic
    (`row_mm != col_mm`). Without a valid spacing a radius in mm is an error, not a guess.
    """
    if (radius_px is None) == (radius_mm is None):
        raise ValueError("give exactly one of radius_px and radius_mm")
    if radius_px is not None:
        if radius_px < 0:
            raise ValueError(f"radius_px must be >= 0, got {radius_px}")
        return float(radius_px), float(radius_px)
    if plane_spacing_mm is None:
        raise ValueError("this image has no valid pixel spacing; give the radius in px")
    if radius_mm < 0:
        raise ValueError(f"radius_mm must be >= 0, got {radius_mm}")
    row_mm, col_mm = plane_spacing_mm
    return float(radius_mm) / float(row_mm), float(radius_mm) / float(col_mm)


def segment_region(
    p0: tuple[float, float],
    p1: tuple[float, float],
    radii_px: tuple[float, float],
    plane_shape: tuple[int, int],
) -> tuple[BBox, np.ndarray] | None:
    """Pixels swept by an elliptic brush moved from `p0` to `p1` (both `(row, col)`).

    Exact and gap-free however far apart the points are: a pixel is inside when its centre
    lies within normalized distance 1 of the segment, the distance measured after scaling rows
    by `1/radius_rows` and columns by `1/radius_cols` (the Minkowski sum of the ellipse and the
    segment). Radii under 0.5 px are raised to 0.5 so a stroke always paints the pixels under
    it. Returns None when the swept area misses the plane.
    """
    ry = max(float(radii_px[0]), 0.5)
    rx = max(float(radii_px[1]), 0.5)
    y0, x0 = float(p0[0]), float(p0[1])
    y1, x1 = float(p1[0]), float(p1[1])
    height, width = plane_shape
    r0 = max(int(math.ceil(min(y0, y1) - ry)), 0)
    r1 = min(int(math.floor(max(y0, y1) + ry)) + 1, height)
    c0 = max(int(math.ceil(min(x0, x1) - rx)), 0)
    c1 = min(int(math.floor(max(x0, x1) + rx)) + 1, width)
    if r0 >= r1 or c0 >= c1:
        return None
    u = (np.arange(r0, r1, dtype=np.float32)[:, None] - y0) / ry
    v = (np.arange(c0, c1, dtype=np.float32)[None, :] - x0) / rx
    du = (y1 - y0) / ry
    dv = (x1 - x0) / rx
    length2 = du * du + dv * dv
    if length2 > 1e-12:
        t = np.clip((u * du + v * dv) / length2, 0.0, 1.0)
        u = u - t * du
        v = v - t * dv
    mask = (u * u + v * v) <= 1.0 + 1e-6
    return (r0, r1, c0, c1), mask


def polygon_region(
    points_rc: Sequence[tuple[float, float]] | np.ndarray, plane_shape: tuple[int, int]
) -> tuple[BBox, np.ndarray] | None:
    """Pixels inside a closed polygon (lasso) with vertices `(row, col)`; None when empty."""
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    rr, cc = _skdraw.polygon(pts[:, 0], pts[:, 1], shape=plane_shape)
    if rr.size == 0:
        return None
    r0, r1 = int(rr.min()), int(rr.max()) + 1
    c0, c1 = int(cc.min()), int(cc.max()) + 1
    mask = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    mask[rr - r0, cc - c0] = True
    return (r0, r1, c0, c1), mask


def flood_region(plane: np.ndarray, seed_rc: tuple[int, int]) -> tuple[BBox, np.ndarray] | None:
    """The 4-connected region of `plane` holding the seed's value; None if the seed is outside.

    OpenCV's flood fill on the "same value as the seed" mask: ~20 ms on a 4096² plane, several
    times faster than `skimage.segmentation.flood`, and it reports the bbox directly.
    """
    r, c = int(seed_rc[0]), int(seed_rc[1])
    if not (0 <= r < plane.shape[0] and 0 <= c < plane.shape[1]):
        return None
    same = np.ascontiguousarray(plane == plane[r, c]).view(np.uint8)
    mask = np.zeros((plane.shape[0] + 2, plane.shape[1] + 2), dtype=np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)  # 4-connectivity, write 1 into the mask
    _, _, _, (x, y, w, h) = cv2.floodFill(same, mask, (c, r), 1, 0, 0, flags)
    return (y, y + h, x, x + w), mask[1 + y : 1 + y + h, 1 + x : 1 + x + w].astype(bool)
