"""P3 §III-B size modulation: give a lesion shape a requested diameter, in mm or in pixels.

The diameter of a shape is `d_init` as P3 defines it: the mean of the major and minor axis
lengths of the ellipse with the same normalized second central moments as the region, which
is what `skimage.measure.regionprops` computes. With a pixel spacing the axes are measured in
millimetres, so a round lesion in an image with anisotropic spacing becomes an ellipse in
pixels; without a valid spacing everything is in pixels and the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.crops import lesion_bbox, resize_mask
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")
_skmeasure = lazy_import("skimage.measure")

#: P3 §III-B: shape-generator masks are 128², upsampled (nearest) to the 256² texture patch.
P3_SHAPE_PX = 128
P3_PATCH_PX = 256
#: P3 §IV-A: ground-truth training masks are normalized to d_init = 100 px before training.
P3_TRAINING_D_INIT_PX = 100.0
#: Accuracy the modulation aims for: max(1 px, 2 %) of the requested diameter.
DIAMETER_TOLERANCE_PX = 1.0
DIAMETER_TOLERANCE_FRACTION = 0.02


def valid_spacing(spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
    """`(row_mm, col_mm)` when both are finite and positive, otherwise None (work in pixels)."""
    if spacing_mm is None or len(spacing_mm) != 2:
        return None
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    if not (math.isfinite(row_mm) and math.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        return None
    return (row_mm, col_mm)


def moment_diameter(mask: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> float:
    """P3 d_init of all foreground pixels taken as one region: (major + minor axis) / 2.

    In millimetres when `spacing_mm` (row_mm, col_mm) is given, in pixels otherwise.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise MaskError("the mask is empty: it has no diameter")
    spacing = valid_spacing(spacing_mm)
    props = _skmeasure.regionprops(mask.astype(np.uint8), spacing=spacing if spacing else (1.0, 1.0))[0]
    return float(props.axis_major_length + props.axis_minor_length) / 2.0  # P3 §III-B


def component_moment_diameters(mask: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> np.ndarray:
    """`moment_diameter` of each 8-connected lesion of a mask, in `ndimage.label` order.

    The one diameter definition of the size control, hard-example mining and the LUNA16-style
    hit radius. A lesion is at least one pixel wide: a single pixel (whose second moments are
    zero) reads 1 px (the mean pixel side in mm with a spacing), not 0. In mm with a valid
    `spacing_mm`, in pixels otherwise; `(N,)` float64.
    """
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros(0)
    spacing = valid_spacing(spacing_mm)
    props = _skmeasure.regionprops(labels, spacing=spacing if spacing else (1.0, 1.0))
    floor = (spacing[0] + spacing[1]) / 2.0 if spacing else 1.0
    return np.array([max((p.axis_major_length + p.axis_minor_length) / 2.0, floor) for p in props], dtype=float)


def tight_crop(mask: np.ndarray) -> np.ndarray:
    """The mask cut to the bounding box of its foreground (P3 §III-B, third step)."""
    box = lesion_bbox(mask)
    r0, c0 = int(box.row0), int(box.col0)
    return np.asarray(mask, dtype=bool)[r0 : r0 + int(box.height), c0 : c0 + int(box.width)]


def scale_mask(mask: np.ndarray, scale_rc: tuple[float, float]) -> np.ndarray:
    """Scale a binary mask's tight crop by `(row_factor, col_factor)`; tight bool out.

    Interpolates the mask as a fraction and keeps pixels covered at least half, which keeps
    outlines smooth and areas right when enlarging (nearest neighbour would keep stairs).
    """
    crop = tight_crop(mask)
    f_r, f_c = float(scale_rc[0]), float(scale_rc[1])
    if not (f_r > 0 and f_c > 0 and math.isfinite(f_r) and math.isfinite(f_c)):
        raise ConfigError(f"scale factors must be positive and finite, got {scale_rc}")
    rows = max(int(round(crop.shape[0] * f_r)), 1)
    cols = max(int(round(crop.shape[1] * f_c)), 1)
    shrinking = rows * cols < crop.size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    scaled = cv2.resize(crop.astype(np.float32), (cols, rows), interpolation=interpolation) >= 0.5
    if not scaled.any():  # a tiny target: keep at least the centre pixel
        scaled[rows // 2, cols // 2] = True
    return tight_crop(scaled)


@dataclass(frozen=True)
class ModulatedMask:
    """A mask scaled to a requested diameter, with what was asked and what was reached."""

    mask: np.ndarray  # (h, w) bool, tight around the shape
    scale_rc: tuple[float, float]  # factors applied to the source shape's pixels
    d_init: float  # the source shape's diameter, in its own pixels
    requested: float  # in `unit`
    achieved: float  # moment diameter of `mask`, in `unit`
    unit: str  # "mm" or "px"
    note: str = ""  # e.g. why the unit is px


def _tolerance(diameter: float) -> float:
    return max(DIAMETER_TOLERANCE_PX, DIAMETER_TOLERANCE_FRACTION * diameter)


def modulate_to_diameter(
    shape_mask: np.ndarray,
    *,
    diameter_mm: float | None = None,
    diameter_px: float | None = None,
    spacing_mm: tuple[float, float] | None = None,
    max_iterations: int = 6,
) -> ModulatedMask:
    """Scale a shape to a diameter in mm (using per-axis spacing) or in px (P3 §III-B).

    `f = d / d_init` (P3 §III-B); with spacing the factors are `d_mm / (spacing · d_init)`
    per axis. Because the result is a pixel grid, the factor is refined a few times against
    the measured diameter so the result is within max(1 px, 2 %) whenever the grid allows.
    Raises ConfigError for a non-positive diameter, for both or neither unit, or for a
    diameter in mm on an image without a valid spacing.
    """
    if (diameter_mm is None) == (diameter_px is None):
        raise ConfigError("give exactly one of diameter_mm and diameter_px")
    spacing = valid_spacing(spacing_mm)
    note = ""
    if diameter_mm is not None:
        if spacing is None:
            raise ConfigError(
                f"diameter_mm={diameter_mm} needs a valid pixel spacing, and the image has "
                f"none ({spacing_mm!r}); give diameter_px instead"
            )
        target, unit = float(diameter_mm), "mm"
        base = (1.0 / spacing[0], 1.0 / spacing[1])  # pixels per mm, per axis
        measure_spacing = spacing
    else:
        target, unit = float(diameter_px), "px"
        base = (1.0, 1.0)
        measure_spacing = None
        if spacing is None:
            note = "no valid pixel spacing: sizes are in pixels"
    if not (math.isfinite(target) and target > 0):
        raise ConfigError(f"the diameter must be positive and finite, got {target} {unit}")

    target_px = target / min(measure_spacing) if measure_spacing is not None else target
    if target_px < 1.0:
        raise ConfigError(
            f"a diameter of {target:g} {unit} is under one pixel here"
            + (f" (spacing {measure_spacing[0]:g} × {measure_spacing[1]:g} mm)" if measure_spacing else "")
        )
    d_init = moment_diameter(shape_mask)  # the source shape's own (isotropic) pixels
    tolerance = _tolerance(target)
    best: tuple[float, np.ndarray, tuple[float, float], float] | None = None

    def attempt(factor: float) -> float:
        nonlocal best
        scale = (factor * base[0], factor * base[1])
        scaled = scale_mask(shape_mask, scale)
        achieved = moment_diameter(scaled, measure_spacing)
        error = abs(achieved - target)
        if best is None or error < best[0]:
            best = (error, scaled, scale, achieved)
        return achieved

    # P3 §III-B: f = d / d_init, then corrected for the pixel grid by the measured ratio ...
    factor = target / d_init
    low, high = 0.0, math.inf
    for _ in range(max(max_iterations, 1)):
        achieved = attempt(factor)
        if best is not None and best[0] <= tolerance / 4.0:
            break
        if achieved < target:
            low = max(low, factor)
        else:
            high = min(high, factor)
        factor = factor * 2.0 if achieved <= 0 else factor * target / achieved  # an empty grid: grow
        if not low < factor < high:  # ... and by bisection when the ratio step overshoots
            factor = (low + high) / 2.0 if math.isfinite(high) and low > 0 else factor
    assert best is not None
    if best[0] > tolerance and math.isfinite(high) and low > 0:
        for _ in range(12):  # the grid makes d(f) a staircase: bisect the bracket
            mid = (low + high) / 2.0
            if attempt(mid) < target:
                low = mid
            else:
                high = mid
            if best[0] <= tolerance / 4.0:
                break
    assert best is not None
    _, scaled, scale, achieved = best
    return ModulatedMask(
        mask=scaled, scale_rc=scale, d_init=d_init, requested=target,
        achieved=achieved, unit=unit, note=note,
    )


def centre_on_canvas(mask: np.ndarray, canvas_px: int) -> np.ndarray:
    """Overlay a tight mask on the centre of a `canvas_px`² zero canvas (P3 §III-B, last step)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape[0] > canvas_px or mask.shape[1] > canvas_px:
        raise ConfigError(
            f"a {mask.shape[0]}x{mask.shape[1]} px shape does not fit a {canvas_px}² canvas; "
            "ask for a smaller diameter or a larger patch"
        )
    canvas = np.zeros((canvas_px, canvas_px), dtype=bool)
    r0 = (canvas_px - mask.shape[0]) // 2
    c0 = (canvas_px - mask.shape[1]) // 2
    canvas[r0 : r0 + mask.shape[0], c0 : c0 + mask.shape[1]] = mask
    return canvas


def p3_size_modulation(
    shape_mask: np.ndarray,
    *,
    diameter_mm: float | None = None,
    diameter_px: float | None = None,
    spacing_mm: tuple[float, float] | None = None,
    patch_px: int = P3_PATCH_PX,
) -> tuple[np.ndarray, ModulatedMask]:
    """P3 §III-B end to end: a generated shape mask → `M_shape` on a `patch_px`² canvas.

    Steps (P3 §III-B): nearest-neighbour upsample to `patch_px`, measure `d_init`, crop the
    tight box, scale by `f = d / d_init`, paste on the centre of a new zero canvas.
    """
    upsampled = resize_mask(shape_mask, (patch_px, patch_px))  # P3: nearest, 128² → 256²
    modulated = modulate_to_diameter(
        upsampled, diameter_mm=diameter_mm, diameter_px=diameter_px, spacing_mm=spacing_mm
    )
    return centre_on_canvas(modulated.mask, patch_px), modulated


def normalize_training_mask(
    mask: np.ndarray,
    *,
    d_init_px: float = P3_TRAINING_D_INIT_PX,
    patch_px: int = P3_PATCH_PX,
    out_px: int = P3_SHAPE_PX,
) -> np.ndarray:
    """A real lesion mask prepared for shape-generator training (P3 §IV-A).

    Scaled to `d_init = 100 px` and centred on the 256² size-modulation canvas, then resized
    (nearest) to 128², so that upsampling a generated 128² mask back to 256² (P3 §III-B) gives
    shapes of d_init ≈ 100 px again. Bool `(out_px, out_px)`.
    """
    modulated = modulate_to_diameter(mask, diameter_px=d_init_px)
    canvas = centre_on_canvas(modulated.mask, patch_px)
    return resize_mask(canvas, (out_px, out_px))
