"""The lesion table: per-instance measurements kept in sync with the label map.

Measurements follow `skimage.measure.regionprops`: `area` is the pixel count and
`equivalent_diameter_area = sqrt(4 * area / pi)`. In millimetres the area is
`area_px * row_mm * col_mm` and the diameter is that of the disc with that area, so anisotropic
spacing is honoured. They are computed inside a bbox (the lesion's previous bbox joined with
the changed bbox), never over the whole map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BBox = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in pixels


@dataclass(frozen=True)
class SliceStats:
    """One lesion on one plane: pixel count, bbox and centroid `(row, col)` in pixels."""

    area_px: int
    bbox: BBox
    centroid_rc: tuple[float, float]


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
    return SliceStats(area_px=area, bbox=bbox, centroid_rc=(cy, cx))


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


@dataclass(frozen=True)
class LesionRecord:
    """One row of the lesion table.

    For a lesion spanning several slices of a volume, `slice` is its key slice (the one with
    the largest in-plane area) and the in-plane measurements are those of that slice;
    `slices` lists every slice it appears on and `total_area_px` sums them. For 2D images
    `slice` is 0. Millimetre values are None when the image has no valid spacing.
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
    if plane_spacing_mm is not None:
        area_mm2 = stats.area_px * float(plane_spacing_mm[0]) * float(plane_spacing_mm[1])
        diameter_mm = equivalent_diameter(area_mm2)
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
    )
