"""Hypothesis strategies and tiny shape makers shared by the geometry tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from skimage.draw import ellipse


def ellipse_mask(
    shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float], angle: float = 0.0
) -> np.ndarray:
    """A filled ellipse drawn by scikit-image (independent of the code under test)."""
    mask = np.zeros(shape, dtype=bool)
    rr, cc = ellipse(centre[0], centre[1], radii[0], radii[1], shape=shape, rotation=angle)
    mask[rr, cc] = True
    return mask


@st.composite
def lesion_shapes(draw, min_radius: float = 4.0, max_radius: float = 30.0) -> np.ndarray:
    """A lesion-like shape: an ellipse, sometimes with a second overlapping lobe."""
    size = 96
    r1 = draw(st.floats(min_radius, max_radius))
    r2 = draw(st.floats(min_radius, max_radius))
    angle = draw(st.floats(-np.pi, np.pi))
    mask = ellipse_mask((size, size), (48, 48), (min(r1, 40), min(r2, 40)), angle)
    if draw(st.booleans()):
        dr, dc = draw(st.floats(-0.6, 0.6)), draw(st.floats(-0.6, 0.6))
        lobe = ellipse_mask(
            (size, size), (48 + dr * r1, 48 + dc * r2), (0.6 * min(r1, 40), 0.6 * min(r2, 40)), -angle
        )
        mask |= lobe
    return mask
