"""A real CT nodule projected into a radiograph as extra attenuation (SPEC §4.3, NODE21
generation baseline after Litjens et al. 2010), in the radiograph's own units.

The nodule's DRR template (`NoduleLibrary.projected`) gets the bank mask's pose, is resampled
onto the footprint's box and normalised to [0, 1] (0 = no nodule, as the baseline's
`convert_to_range_0_1`). The baseline's contrast `c = max(0.4, ln(mean template in nodule /
mean lung background))` (both in [0, 1] units; here the background is normalised by the
image's robust range) sets the peak; the baseline then averages the clone 50/50 with the
original, so its peak is about c/2 of the display range whatever the size. lesion-studio
scales that peak with the nodule's size, since attenuation grows with the thickness crossed:
`peak = min(c/2 · clip(d / 20 mm, 0.25, 1), 0.2)` of the image's range (0.2: the brightest
real nodular opacity of the chest CR `RG1_UNCR.dcm` peaks at 0.19 of its range). If an
underlying rib or edge makes the ring around the nodule brighter than the nodule's mean, the
peak is raised until the nodule is denser than its ring. The added attenuation is
confined by a Gaussian-softened footprint (the template itself already fades to 0 at the
nodule's edge) and compressed smoothly below the image's top value, so it never saturates
and is always denser than its surroundings.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lesion_studio.core.classical.ct_insertion import (
    contrast_ring,
    pose_view,
    resample_to_footprint,
    soft_alpha,
)
from lesion_studio.core.errors import MaskError

#: SPEC §4.3: the baseline's lower bound on the contrast factor.
MIN_CONTRAST_C = 0.4
#: Diameter (mm) at which the peak reaches the baseline's c/2; smaller nodules scale down.
FULL_CONTRAST_DIAMETER_MM = 20.0
MIN_SIZE_FACTOR = 0.25
#: Width of a frontal chest radiograph's field (mm): the pixel size assumed without spacing.
ASSUMED_FIELD_MM = 400.0
#: Largest peak added, as a fraction of the image's range: the real nodular opacities of the
#: pydicom-data chest CR `RG1_UNCR.dcm` (~25-30 mm) peak at 0.05-0.19 of its range.
MAX_PEAK_FRACTION = 0.2
#: Share of the nodule's projected thickness mixed into the template: the SPEC's clip at
#: −500 HU hides ground-glass tissue entirely, which leaves part-solid nodules as specks.
THICKNESS_WEIGHT = 0.3
#: Optional flattening of the template's dome (t ** gamma). 1.0 = the DRR as it is: with smooth
#: outlines (`nodule_library.smooth_outline`) and the size-scaled contrast above, the plain DRR
#: looked closest to RG1's real opacities; 0.6-0.8 gave pasted-looking plateaus.
PROFILE_GAMMA = 1.0
#: Projection blur of the template (source px, 1 mm): a DRR is not sharper than a detector.
TEMPLATE_BLUR_PX = 0.5


def size_factor(diameter_mm: float) -> float:
    """How much of the baseline's peak contrast a nodule of this size gets (0.25..1)."""
    return float(np.clip(diameter_mm / FULL_CONTRAST_DIAMETER_MM, MIN_SIZE_FACTOR, 1.0))


def baseline_contrast(template01: np.ndarray, footprint: np.ndarray, background01: float) -> float:
    """SPEC §4.3 `c = max(0.4, ln(mean template inside / mean background))`, [0, 1] units."""
    inside = template01[footprint]
    inside = inside[inside > 0]
    if inside.size == 0 or background01 <= 0:
        return MIN_CONTRAST_C
    return max(MIN_CONTRAST_C, math.log(float(inside.mean()) / background01))


def insert_radiograph_nodule(
    background: np.ndarray,
    footprint: np.ndarray,
    template: np.ndarray,
    template_mask: np.ndarray,
    *,
    diameter_mm: float,
    image_range: tuple[float, float],
    thickness: np.ndarray | None = None,
    rotation_deg: float = 0.0,
    flip_vertical: bool = False,
    flip_horizontal: bool = False,
) -> np.ndarray:
    """Add a nodule's DRR template over `footprint` of a radiograph patch (float32, own units).

    `image_range` is the image's robust (low, high) range; larger values are denser.
    `thickness` (template-sized, mm of nodule along the ray) adds a `THICKNESS_WEIGHT` share
    of the nodule's body, so ground-glass parts stay faintly visible.
    """
    bg = np.asarray(background, dtype=np.float32)
    footprint = np.asarray(footprint, dtype=bool)
    if bg.shape != footprint.shape:
        raise MaskError(f"patch {bg.shape} and footprint {footprint.shape} differ in shape")
    template = np.asarray(template, dtype=np.float32)
    floor = float(np.min(template))
    t_src = (template - floor) / max(float(np.max(template)) - floor, 1e-6)
    if thickness is not None:
        body = np.asarray(thickness, dtype=np.float32) * np.asarray(template_mask, dtype=bool)
        body = body / max(float(body.max()), 1e-6)
        t_src = (1.0 - THICKNESS_WEIGHT) * t_src + THICKNESS_WEIGHT * body
    t_src = ndimage.gaussian_filter(t_src, TEMPLATE_BLUR_PX)
    posed, posed_mask = pose_view(
        t_src, template_mask, rotation_deg=rotation_deg,
        flip_vertical=flip_vertical, flip_horizontal=flip_horizontal,
    )
    rendered = np.maximum(resample_to_footprint(posed, posed_mask, footprint), 0.0)
    peak = float(np.max(rendered[footprint])) if footprint.any() else 0.0
    t = np.clip(rendered / max(peak, 1e-6), 0.0, 1.0) ** PROFILE_GAMMA
    t = t * soft_alpha(footprint)
    if footprint.any():  # every footprint pixel a little denser, so the mask is all nodule
        t[footprint] = np.maximum(t[footprint], 0.05)

    lo, hi = float(image_range[0]), float(image_range[1])
    span = hi - lo if hi > lo else max(float(np.ptp(bg)), 1.0)
    ring = contrast_ring(footprint)
    local = float(bg[ring].mean()) if ring.any() else float(bg.mean())
    background01 = float(np.clip((local - lo) / span, 0.05, 1.0))
    c = baseline_contrast(t, footprint, background01)
    amplitude = min(0.5 * c * size_factor(diameter_mm), MAX_PEAK_FRACTION) * span
    top = max(hi, float(bg.max()))
    out = _add_attenuation(bg, amplitude * t, top)
    if ring.any() and footprint.any():
        # over a rib or an edge the ring can outshine the nodule: raise the nodule until its
        # mean clears the ring by a quarter of what it adds on average
        weight = float(t[footprint].mean())
        for _ in range(4):
            added = float((out - bg)[footprint].mean())
            deficit = 0.25 * added - float(out[footprint].mean() - out[ring].mean())
            if deficit <= 0:
                break
            amplitude += 1.5 * deficit / max(weight, 1e-3)
            out = _add_attenuation(bg, amplitude * t, top)
    return out


def _add_attenuation(bg: np.ndarray, add: np.ndarray, top: float) -> np.ndarray:
    """`bg + add`, compressed smoothly below `top`: never saturates, always adds something."""
    headroom = np.maximum(top - bg, 0.0)
    safe = np.maximum(headroom, 1e-6)
    added = np.where(headroom > 0, headroom * (1.0 - np.exp(-add / safe)), 0.0)
    return (bg + added).astype(np.float32)
