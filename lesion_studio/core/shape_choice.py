"""Lesion shapes offered by the shape picker and their footprint at a chosen size.

A shape is a binary mask at any scale (a mask-bank entry, a shape-generator sample, or a
lesion the user drew); `footprint` scales it to a diameter in mm (per-axis spacing honoured,
P3 §III-B) or px, then rotates and flips it, giving exactly the pixels a click would place.
Shapes are cleaned (`clean_shape`) on the way in and the placed footprint on the way out, so a
drawn lesion with specks or holes still gives one solid, smooth lesion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lesion_studio.core.geometry.mask_transforms import rotate_flip_mask
from lesion_studio.core.geometry.shape_cleanup import clean_shape
from lesion_studio.core.geometry.size_modulation import modulate_to_diameter, tight_crop


@dataclass(frozen=True, eq=False)
class ShapeChoice:
    """A candidate shape: `mask` (bool), where it came from, and its index in that source."""

    mask: np.ndarray
    source: str  # "bank", "generator" or "drawn"
    index: int = -1  # bank index or generator seed
    pinned: bool = False


def footprint(
    shape: np.ndarray,
    *,
    diameter: float,
    unit: str,
    spacing_mm: tuple[float, float] | None,
    rotation_deg: float = 0.0,
    flip_vertical: bool = False,
    flip_horizontal: bool = False,
) -> np.ndarray:
    """The placed mask (bool) for a shape at `diameter` in `unit` ("mm" or "px").

    Same order as `synthesis_plan.build_plan`: flips and rotation first, then size modulation,
    so the outline the user sees is the footprint the plan will fill. As there, the shape is
    cleaned on the way in (`clean_shape`: one solid, smooth component) and the scaled
    footprint again at its final size, keeping the modulated mask's array shape so that
    `centred_origin` gives the plan's origin. MaskError when the shape is empty.
    """
    solid = clean_shape(np.asarray(shape) > 0)
    posed = rotate_flip_mask(
        tight_crop(solid),
        rotation_deg=rotation_deg, flip_vertical=flip_vertical, flip_horizontal=flip_horizontal,
    )
    kwargs = {"diameter_mm": diameter} if unit == "mm" else {"diameter_px": diameter}
    placed = modulate_to_diameter(posed, spacing_mm=spacing_mm, **kwargs).mask
    return clean_shape(placed)


def centred_origin(mask_shape: tuple[int, int], centre_rc: tuple[float, float]) -> tuple[int, int]:
    """Top-left pixel that centres a mask of `mask_shape` on `centre_rc`, as `build_plan` does."""
    return (
        int(math.floor(centre_rc[0] - mask_shape[0] / 2.0 + 0.5)),
        int(math.floor(centre_rc[1] - mask_shape[1] / 2.0 + 0.5)),
    )
