"""Lesion shapes offered by the shape picker and their footprint at a chosen size.

A shape is a binary mask at any scale (a mask-bank entry, a shape-generator sample, or a
lesion the user drew); `footprint` scales it to a diameter in mm (per-axis spacing honoured,
P3 §III-B) or px, then rotates and flips it, giving exactly the pixels a click would place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lesion_studio.core.geometry.mask_transforms import rotate_flip_mask
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
    so the outline the user sees is the footprint the plan will fill.
    """
    posed = rotate_flip_mask(
        tight_crop(np.asarray(shape, bool)),
        rotation_deg=rotation_deg, flip_vertical=flip_vertical, flip_horizontal=flip_horizontal,
    )
    kwargs = {"diameter_mm": diameter} if unit == "mm" else {"diameter_px": diameter}
    return modulate_to_diameter(posed, spacing_mm=spacing_mm, **kwargs).mask


def centred_origin(mask_shape: tuple[int, int], centre_rc: tuple[float, float]) -> tuple[int, int]:
    """Top-left pixel that centres a mask of `mask_shape` on `centre_rc`, as `build_plan` does."""
    return (
        int(math.floor(centre_rc[0] - mask_shape[0] / 2.0 + 0.5)),
        int(math.floor(centre_rc[1] - mask_shape[1] / 2.0 + 0.5)),
    )
