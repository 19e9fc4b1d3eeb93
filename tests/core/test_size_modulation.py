"""P3 §III-B size modulation in pixels and millimetres, and training-mask normalization."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import regionprops

from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.size_modulation import (
    centre_on_canvas,
    modulate_to_diameter,
    moment_diameter,
    normalize_training_mask,
    p3_size_modulation,
    valid_spacing,
)
from tests.core._lesion_strategies import ellipse_mask, lesion_shapes


def _tolerance(d: float) -> float:
    return max(1.0, 0.02 * d)


def test_moment_diameter_of_a_disc_is_its_diameter():
    disc = ellipse_mask((101, 101), (50, 50), (20.5, 20.5))
    assert moment_diameter(disc) == pytest.approx(41.0, abs=0.5)


def test_moment_diameter_of_a_rectangle_hand_computed():
    # a w x h rectangle: variance w²/12 → major axis 4·sqrt(w²/12) (skimage's definition)
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:20, 5:45] = True  # 10 rows x 40 cols
    major = 4 * math.sqrt((40**2 - 1) / 12)  # discrete variance of 40 consecutive integers
    minor = 4 * math.sqrt((10**2 - 1) / 12)
    assert moment_diameter(mask) == pytest.approx((major + minor) / 2, rel=1e-6)


def test_moment_diameter_honours_anisotropic_spacing():
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:30, 10:20] = True  # 20 rows x 10 cols; at (0.5, 1.0) mm both sides are 10 mm
    square = np.zeros((40, 60), dtype=bool)
    square[10:20, 10:20] = True
    assert moment_diameter(mask, (0.5, 1.0)) == pytest.approx(moment_diameter(square), rel=0.02)


def test_valid_spacing_rejects_nonsense():
    assert valid_spacing((0.5, 0.7)) == (0.5, 0.7)
    for bad in (None, (0.0, 1.0), (-1.0, 1.0), (float("nan"), 1.0), (1.0,)):
        assert valid_spacing(bad) is None


@settings(max_examples=60, deadline=None)
@given(shape=lesion_shapes(), diameter_px=st.floats(6.0, 150.0))
def test_modulated_mask_reaches_requested_diameter_px(shape, diameter_px):
    result = modulate_to_diameter(shape, diameter_px=diameter_px)
    assert result.unit == "px"
    measured = moment_diameter(result.mask)  # independent re-measure of the output
    assert abs(measured - diameter_px) <= _tolerance(diameter_px)


@settings(max_examples=40, deadline=None)
@given(
    shape=lesion_shapes(),
    row_mm=st.floats(0.2, 2.0), col_mm=st.floats(0.2, 2.0),
    diameter_px_equiv=st.floats(8.0, 120.0),
)
def test_modulated_mask_reaches_requested_diameter_mm(shape, row_mm, col_mm, diameter_px_equiv):
    diameter_mm = diameter_px_equiv * max(row_mm, col_mm)  # at least ~8 px on each axis
    result = modulate_to_diameter(shape, diameter_mm=diameter_mm, spacing_mm=(row_mm, col_mm))
    measured_mm = moment_diameter(result.mask, (row_mm, col_mm))
    one_px_mm = max(row_mm, col_mm)
    assert abs(measured_mm - diameter_mm) <= max(one_px_mm, 0.02 * diameter_mm)


def test_anisotropic_spacing_makes_a_round_lesion_an_ellipse_in_pixels():
    disc = ellipse_mask((81, 81), (40, 40), (30, 30))
    # rows are 2 mm, columns 0.5 mm: 20 mm is 10 rows and 40 columns
    result = modulate_to_diameter(disc, diameter_mm=20.0, spacing_mm=(2.0, 0.5))
    props = regionprops(result.mask.astype(np.uint8))[0]
    height = props.bbox[2] - props.bbox[0]
    width = props.bbox[3] - props.bbox[1]
    assert height == pytest.approx(10, abs=1)
    assert width == pytest.approx(40, abs=1)


def test_diameter_mm_without_spacing_is_refused_with_a_reason():
    disc = ellipse_mask((41, 41), (20, 20), (10, 10))
    with pytest.raises(ConfigError, match="spacing"):
        modulate_to_diameter(disc, diameter_mm=5.0, spacing_mm=None)


def test_pixels_without_spacing_say_so():
    disc = ellipse_mask((41, 41), (20, 20), (10, 10))
    result = modulate_to_diameter(disc, diameter_px=12.0, spacing_mm=None)
    assert "pixel" in result.note


@pytest.mark.parametrize("kwargs", [{}, {"diameter_px": 3.0, "diameter_mm": 3.0},
                                    {"diameter_px": -1.0}, {"diameter_px": float("inf")}])
def test_bad_diameter_requests_are_config_errors(kwargs):
    disc = ellipse_mask((41, 41), (20, 20), (10, 10))
    with pytest.raises(ConfigError):
        modulate_to_diameter(disc, **kwargs)


def test_empty_mask_has_no_diameter():
    with pytest.raises(MaskError):
        modulate_to_diameter(np.zeros((10, 10), bool), diameter_px=5.0)


def test_p3_pipeline_centres_on_a_256_canvas():
    shape_128 = ellipse_mask((128, 128), (40, 70), (20, 12), 0.3)
    canvas, result = p3_size_modulation(shape_128, diameter_px=70.0)
    assert canvas.shape == (256, 256)
    assert abs(moment_diameter(canvas) - 70.0) <= _tolerance(70.0)
    rows, cols = np.nonzero(canvas)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(127.5, abs=1.0)
    assert (cols.min() + cols.max()) / 2 == pytest.approx(127.5, abs=1.0)
    # nearest upsampling 128 → 256 doubles the shape before d_init is measured (P3 §III-B)
    assert result.d_init == pytest.approx(2 * moment_diameter(shape_128), rel=0.03)


def test_shape_too_large_for_canvas_is_refused():
    with pytest.raises(ConfigError):
        centre_on_canvas(np.ones((300, 10), bool), 256)


def test_training_masks_normalized_to_d_init_100_on_the_256_canvas():
    small = ellipse_mask((64, 64), (30, 30), (6, 4), 0.7)
    large = ellipse_mask((400, 400), (200, 200), (150, 90), -0.4)
    for mask in (small, large):
        out = normalize_training_mask(mask)
        assert out.shape == (128, 128)
        # stored at 128²: half the 256-canvas size, so 50 px here and 100 px after P3's 2x upsampling
        assert moment_diameter(out) == pytest.approx(50.0, abs=1.5)


def test_a_diameter_under_one_pixel_is_refused_clearly() -> None:
    import numpy as np
    import pytest

    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.geometry.size_modulation import modulate_to_diameter

    disc = np.zeros((64, 64), bool)
    yy, xx = np.mgrid[:64, :64]
    disc[(yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2] = True
    with pytest.raises(ConfigError, match="under one pixel"):
        modulate_to_diameter(disc, diameter_mm=4.0, spacing_mm=(6.0, 6.0))
    with pytest.raises(ConfigError, match="under one pixel"):
        modulate_to_diameter(disc, diameter_px=0.5)
    small = modulate_to_diameter(disc, diameter_px=1.5)
    assert small.mask.any()
