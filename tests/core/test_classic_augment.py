"""Classic augmentation presets P2 / P4 (SPEC §1.7): ranges, geometry, masks follow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion_studio.core.classic_augment import (
    P2_PRESET,
    P4_PRESET,
    ClassicParams,
    apply_params,
    augment,
    preset,
    sample_params,
)
from lesion_studio.core.errors import ConfigError
from tests.core._lesion_strategies import ellipse_mask


def _scene(shape=(64, 80)):
    mask = ellipse_mask(shape, (25, 50), (8, 5), 0.4)
    rng = np.random.default_rng(0)
    image = (rng.normal(0, 1, shape) + 100.0 * mask).astype(np.float32)
    return image, mask


def test_identity_changes_nothing():
    image, mask = _scene()
    out, out_mask = apply_params(image, mask, ClassicParams())
    np.testing.assert_allclose(out, image, atol=1e-4)
    np.testing.assert_array_equal(out_mask, mask)


def test_horizontal_flip_mirrors_image_and_mask():
    image, mask = _scene()
    out, out_mask = apply_params(image, mask, ClassicParams(flip_horizontal=True))
    np.testing.assert_allclose(out, image[:, ::-1], atol=1e-4)
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])


def test_rotation_90_is_counter_clockwise_as_displayed():
    image = np.zeros((9, 9), np.float32)
    image[0, 8] = 1.0  # top-right corner
    out, _ = apply_params(image, None, ClassicParams(rotation_deg=90.0))
    np.testing.assert_allclose(out, np.rot90(image), atol=1e-5)  # rot90 turns counter-clockwise
    assert out[0, 0] == pytest.approx(1.0)


def test_shift_moves_pixels_by_the_given_rows_and_columns():
    mask = np.zeros((30, 30), bool)
    mask[10, 12] = True
    _, out_mask = apply_params(np.zeros((30, 30), np.float32), mask, ClassicParams(shift_rc_px=(3.0, -5.0)))
    assert np.argwhere(out_mask).tolist() == [[13, 7]]


def test_shear_moves_top_and_bottom_rows_by_shear_px():
    h, w = 41, 61
    mask = np.zeros((h, w), bool)
    mask[0, 30] = mask[40, 30] = mask[20, 30] = True
    _, out_mask = apply_params(np.zeros((h, w), np.float32), mask, ClassicParams(shear_px=10.0))
    # top row (20 rows above the centre) moves by -10·20/20.5, bottom by +10·20/20.5, centre stays
    assert sorted(map(tuple, np.argwhere(out_mask).tolist())) == [(0, 20), (20, 30), (40, 40)]


def test_scale_grows_the_mask_area_by_the_square():
    image, mask = _scene((96, 96))
    _, out_mask = apply_params(image, mask, ClassicParams(scale=1.1))
    assert out_mask.sum() / mask.sum() == pytest.approx(1.21, rel=0.06)


def test_contrast_only_increases_up_to_fifty_percent_above_the_minimum():
    image = np.linspace(-100, 300, 400, dtype=np.float32).reshape(20, 20)
    out, _ = apply_params(image, None, ClassicParams(contrast_max=0.5, contrast_seed=1))
    low = image.min()
    ratio = (out - low)[image > low] / (image - low)[image > low]
    assert ratio.min() >= 1.0 - 1e-5 and ratio.max() <= 1.5 + 1e-5
    assert ratio.max() > 1.4 and ratio.min() < 1.1  # per pixel, across the range


def test_blur_smooths_with_sigma_two():
    image = np.zeros((41, 41), np.float32)
    image[20, 20] = 1.0
    out, _ = apply_params(image, None, ClassicParams(blur_sigma_px=2.0))
    rows = np.arange(41) - 20
    variance = (out.sum(axis=1) * rows**2).sum() / out.sum()
    assert variance == pytest.approx(4.0, rel=0.05)  # σ² = 4 (PIL radius 2 = σ 2)


def test_preset_ranges_are_the_papers():
    rng = np.random.default_rng(0)
    p2 = [sample_params(P2_PRESET, rng, (100, 100)) for _ in range(400)]
    assert max(abs(p.rotation_deg) for p in p2) <= 25 and max(abs(p.rotation_deg) for p in p2) > 22
    assert all(0.85 <= p.scale <= 1.15 for p in p2)
    assert all(abs(p.shear_px) <= 10 for p in p2)
    assert 0.4 < np.mean([p.blur_sigma_px > 0 for p in p2]) < 0.6
    assert 0.4 < np.mean([p.contrast_max > 0 for p in p2]) < 0.6
    assert not any(p.flip_horizontal for p in p2)
    p4 = [sample_params(P4_PRESET, rng, (100, 200)) for _ in range(400)]
    assert all(abs(p.rotation_deg) <= 1 for p in p4)
    assert all(0.9 <= p.scale <= 1.1 for p in p4)
    assert all(abs(p.shift_rc_px[0]) <= 5 and abs(p.shift_rc_px[1]) <= 10 for p in p4)
    assert 0.4 < np.mean([p.flip_horizontal for p in p4]) < 0.6
    assert all(p.blur_sigma_px == 0 and p.contrast_max == 0 for p in p4)
    assert preset("p2") is P2_PRESET
    with pytest.raises(ConfigError):
        preset("P9")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), which=st.sampled_from(["P2", "P4"]))
def test_mask_follows_the_image(seed, which):
    shape = (96, 96)
    mask = ellipse_mask(shape, (48, 40), (14, 9), 0.3)
    image = (200.0 * mask).astype(np.float32) + 10.0
    out, out_mask, params = augment(image, mask, preset(which), np.random.default_rng(seed))
    assert out_mask.dtype == bool
    bright = out > (out.min() + (out.max() - out.min()) / 2)
    iou = (bright & out_mask).sum() / max((bright | out_mask).sum(), 1)
    assert iou > 0.8, params
    # same seed, same result
    again, again_mask, _ = augment(image, mask, preset(which), np.random.default_rng(seed))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(again_mask, out_mask)
