"""The lesion table: per-instance measurements kept in sync with the label map.

Measurements follow `skimage.measure.regionprops`: `area` is the pixel count and
`equivalent_diameter_area = sqrt(4 * area / pi)`. In millimetres the area is
`area_px * row_mm * col_mm` and the diameter is that of the disc with that area, so anisotropic
spacing is honoured. They are computed inside a bbox (the lesion's previous bbox joined with
the changed bbox), never over the whole map.

Two diameters are shown because two definitions are in use. The *area-equivalent* diameter is
the disc of the same area. The *moment* diameter is P3's `d_init` (§III-B), the definition the
size control uses (`size_modulation.moment_diameter`): the mean of the major and minor axis
lengths of the ellipse with the same second central moments. For an elongated lesion they
differ, so a lesion made "10 mm" by the size control reads 10 mm only in the moment column.
The moments are kept as exact integer sums, so incremental updates equal a full rebuild.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from lesion_studio.lazy import lazy_import

ndimage = lazy_import("scipy.ndimage")

BBox = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in pixels


@dataclass(frozen=True)
class SliceStats:
    """One lesion on one plane: pixel count, bbox, centroid `(row, col)` in pixels, and the
    exact raw moment sums `(Σr, Σc, Σr², Σc², Σr·c)` of its pixel coordinates."""

    area_px: int
    bbox: BBox
    centroid_rc: tuple[float, float]
    moment_sums: tuple[int, int, int, int, int]


def measure(plane: np.ndarray, label: int, region: BBox) -> SliceStats | None:
    """Stats of `label` on `plane`, looking only inside `region`; None when it has no pixels."""
    r0, r1, c0, c1 = region
    mask = plane[r0:r1, c0:c1] == label
    row_counts = np.count_nonzero(mask, axis=1)
    area = int(row_counts.sum())
    if area == 0:
        return None
    col_counts = np.count_nonzero(mask, axis=0)
    rows = np.flatnonzero(row_counts)
    cols = np.flatnonzero(col_counts)
    cy = float(np.dot(row_counts, np.arange(r0, r1, dtype=np.float64))) / area
    cx = float(np.dot(col_counts, np.arange(c0, c1, dtype=np.float64))) / area
    bbox = (r0 + int(rows[0]), r0 + int(rows[-1]) + 1, c0 + int(cols[0]), c0 + int(cols[-1]) + 1)
    return SliceStats(
        area_px=area, bbox=bbox, centroid_rc=(cy, cx),
        moment_sums=_moment_sums(mask, row_counts, col_counts, r0, c0),
    )


def _moment_sums(
    mask: np.ndarray, row_counts: np.ndarray, col_counts: np.ndarray, r0: int, c0: int
) -> tuple[int, int, int, int, int]:
    """`(Σr, Σc, Σr², Σc², Σr·c)` over the mask's pixels in plane coordinates, as exact ints."""
    i = np.arange(mask.shape[0], dtype=np.int64)
    j = np.arange(mask.shape[1], dtype=np.int64)
    n = int(row_counts.sum())
    si, sj = int(np.dot(row_counts, i)), int(np.dot(col_counts, j))
    sii, sjj = int(np.dot(row_counts, i * i)), int(np.dot(col_counts, j * j))
    sij = int(np.dot(i, mask.astype(np.int64) @ j))
    return (  # shift local (i, j) to plane coordinates (r0 + i, c0 + j), exactly
        n * r0 + si,
        n * c0 + sj,
        n * r0 * r0 + 2 * r0 * si + sii,
        n * c0 * c0 + 2 * c0 * sj + sjj,
        n * r0 * c0 + r0 * sj + c0 * si + sij,
    )


def measure_plane(plane: np.ndarray) -> dict[int, SliceStats]:
    """Stats of every nonzero label on a plane (a full rebuild, for loading and importing)."""
    out: dict[int, SliceStats] = {}
    if not plane.any():
        return out
    for index, found in enumerate(ndimage.find_objects(plane.astype(np.int32, copy=False))):
        if found is None:
            continue
        region = (found[0].start, found[0].stop, found[1].start, found[1].stop)
        stats = measure(plane, index + 1, region)
        if stats is not None:
            out[index + 1] = stats
    return out


def union_bbox(a: BBox | None, b: BBox | None) -> BBox | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def equivalent_diameter(area: float) -> float:
    """Diameter of the disc with this area (regionprops' `equivalent_diameter_area`)."""
    return math.sqrt(4.0 * area / math.pi)


def moment_diameter_from_sums(
    area_px: int,
    moment_sums: tuple[int, int, int, int, int],
    spacing_mm: tuple[float, float] | None = None,
) -> float:
    """P3's moment diameter (major + minor axis) / 2 from raw moment sums; mm with a spacing.

    The same value as `size_modulation.moment_diameter` on the pixels (regionprops' axes are
    `4·sqrt(eigenvalue)` of the coordinate covariance), without needing the mask again.
    """
    n = int(area_px)
    s_r, s_c, s_rr, s_cc, s_rc = (int(v) for v in moment_sums)
    n2 = float(n) * float(n)
    var_r = (n * s_rr - s_r * s_r) / n2  # exact integer numerators: no cancellation
    var_c = (n * s_cc - s_c * s_c) / n2
    cov = (n * s_rc - s_r * s_c) / n2
    if spacing_mm is not None:
        row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
        var_r, var_c, cov = var_r * row_mm * row_mm, var_c * col_mm * col_mm, cov * row_mm * col_mm
    mean = (var_r + var_c) / 2.0
    spread = math.hypot((var_r - var_c) / 2.0, cov)
    major, minor = mean + spread, max(mean - spread, 0.0)
    return (4.0 * math.sqrt(major) + 4.0 * math.sqrt(minor)) / 2.0


@dataclass(frozen=True)
class LesionRecord:
    """One row of the lesion table.

    For a lesion spanning several slices of a volume, `slice` is its key slice (the one with
    the largest in-plane area) and the in-plane measurements are those of that slice;
    `slices` lists every slice it appears on and `total_area_px` sums them. For 2D images
    `slice` is 0. Millimetre values are None when the image has no valid spacing.
    `equivalent_diameter_*` is the area-equivalent diameter (disc of the same area);
    `moment_diameter_*` is P3's d_init, the size control's definition.
    """

    id: int
    class_name: str
    origin: str
    color_rgb: tuple[int, int, int]
    slice: int
    slices: tuple[int, ...]
    area_px: int
    area_mm2: float | None
    equivalent_diameter_px: float
    equivalent_diameter_mm: float | None
    bbox: BBox
    centroid_rc: tuple[float, float]
    total_area_px: int
    moment_diameter_px: float
    moment_diameter_mm: float | None


def make_record(
    label: int,
    class_name: str,
    origin: str,
    color_rgb: tuple[int, int, int],
    per_slice: dict[int, SliceStats],
    plane_spacing_mm: tuple[float, float] | None,
) -> LesionRecord:
    """Build a table row from a lesion's per-slice stats."""
    key = max(per_slice, key=lambda s: (per_slice[s].area_px, -s))
    stats = per_slice[key]
    area_mm2 = None
    diameter_mm = None
    moment_mm = None
    if plane_spacing_mm is not None:
        area_mm2 = stats.area_px * float(plane_spacing_mm[0]) * float(plane_spacing_mm[1])
        diameter_mm = equivalent_diameter(area_mm2)
        moment_mm = moment_diameter_from_sums(stats.area_px, stats.moment_sums, plane_spacing_mm)
    return LesionRecord(
        id=label,
        class_name=class_name,
        origin=origin,
        color_rgb=color_rgb,
        slice=key,
        slices=tuple(sorted(per_slice)),
        area_px=stats.area_px,
        area_mm2=area_mm2,
        equivalent_diameter_px=equivalent_diameter(stats.area_px),
        equivalent_diameter_mm=diameter_mm,
        bbox=stats.bbox,
        centroid_rc=stats.centroid_rc,
        total_area_px=sum(s.area_px for s in per_slice.values()),
        moment_diameter_px=moment_diameter_from_sums(stats.area_px, stats.moment_sums),
        moment_diameter_mm=moment_mm,
    )
