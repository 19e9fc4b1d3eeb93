"""P0 crop rules (Eq. 1-2), context crops with reflect padding, and paste back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.crops import (
    Box,
    PixelBox,
    context_box,
    extract_crop,
    feather_weights,
    lesion_bbox,
    p0_mask_crop,
    paste_mask,
)


def test_lesion_bbox_is_tight_and_half_open():
    mask = np.zeros((20, 30), dtype=bool)
    mask[4:9, 10:13] = True
    mask[7, 20] = True
    assert lesion_bbox(mask) == Box(row0=4.0, col0=10.0, height=5.0, width=11.0)


def test_lesion_bbox_of_empty_mask_is_an_error():
    with pytest.raises(MaskError):
        lesion_bbox(np.zeros((5, 5), dtype=bool))


def test_p0_crop_wide_lesion_hand_computed():
    # ws = 10 >= hs = 6: wm = 12, x = 30 - 1, y = 20 - (12 - 6) / 2 = 17 (P0 Eq. 1-2)
    crop = p0_mask_crop(Box(row0=20, col0=30, height=6, width=10))
    assert crop == Box(row0=17.0, col0=29.0, height=12.0, width=12.0)


def test_p0_crop_tall_lesion_hand_computed():
    # hs = 10 > ws = 4: wm = 12, margin 0.1·hs = 1 on rows, columns centred: 8 - (12 - 4) / 2
    crop = p0_mask_crop(Box(row0=5, col0=8, height=10, width=4))
    assert crop == Box(row0=4.0, col0=4.0, height=12.0, width=12.0)


def test_p0_crop_square_lesion_hand_computed():
    crop = p0_mask_crop(Box(row0=0, col0=0, height=5, width=5))
    assert crop.height == pytest.approx(6.0) and crop.width == pytest.approx(6.0)
    assert crop.row0 == pytest.approx(-0.5) and crop.col0 == pytest.approx(-0.5)


def test_context_box_is_three_wm_centred_hand_computed():
    # mask crop (17, 29, 12, 12): centre (23, 35), side 3·12 = 36 → top-left (5, 17)
    box = context_box(Box(row0=17, col0=29, height=12, width=12))
    assert box == PixelBox(row0=5, col0=17, height=36, width=36)


@settings(max_examples=150, deadline=None)
@given(
    row0=st.floats(-50, 500), col0=st.floats(-50, 500),
    height=st.floats(1, 200), width=st.floats(1, 200),
)
def test_p0_crop_contains_lesion_with_ten_percent_margins(row0, col0, height, width):
    lesion = Box(row0, col0, height, width)
    crop = p0_mask_crop(lesion)
    long_side = max(height, width)
    margin = 0.1 * long_side  # P0 Eq. 1-2
    assert crop.height == pytest.approx(1.2 * long_side)
    assert crop.width == pytest.approx(1.2 * long_side)
    tol = 1e-9 * max(1.0, abs(row0) + abs(col0) + long_side)
    for before, after in (
        (lesion.row0 - crop.row0, crop.row1 - lesion.row1),
        (lesion.col0 - crop.col0, crop.col1 - lesion.col1),
    ):
        assert before >= margin - tol and after >= margin - tol
        assert before == pytest.approx(after, abs=1e-6 * long_side)  # centred on each axis
    # the 3·wm context contains the mask crop whatever the rounding
    context = context_box(crop).as_box()
    assert context.contains(crop, tol=1.0)
    assert context.contains(lesion)


def test_extract_crop_inside_image_is_a_plain_slice():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    np.testing.assert_array_equal(extract_crop(image, PixelBox(2, 3, 4, 5)), image[2:6, 3:8])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(2, 12), cols=st.integers(2, 12),
    row0=st.integers(-30, 20), col0=st.integers(-30, 20),
    side=st.integers(1, 40),
)
def test_extract_crop_outside_matches_numpy_reflect_pad(rows, cols, row0, col0, side):
    image = np.random.default_rng(0).normal(size=(rows, cols)).astype(np.float32)
    pad = 80
    padded = np.pad(image, pad, mode="reflect")
    expected = padded[row0 + pad : row0 + pad + side, col0 + pad : col0 + pad + side]
    np.testing.assert_array_equal(extract_crop(image, PixelBox(row0, col0, side, side)), expected)


def test_feather_weights_hand_computed():
    w = feather_weights((10, 10), 4.0)
    # the pixel centre of the edge pixel is 0.5 px inside: 0.5 / 4
    assert w[0, 5] == pytest.approx(0.125)
    assert w[2, 5] == pytest.approx(2.5 / 4)
    assert w[5, 5] == pytest.approx(1.0)


def test_paste_mask_union_and_removal():
    full = np.zeros((10, 10), dtype=bool)
    full[0, 0] = True
    crop = np.zeros((4, 4), dtype=bool)
    crop[1:3, 1:3] = True
    added = paste_mask(full, crop, PixelBox(8, 8, 4, 4))
    assert added[0, 0] and added[9, 9] and added.sum() == 2  # clipped to the image
    removed = paste_mask(added, np.ones((4, 4), bool), PixelBox(-2, -2, 4, 4), remove=True)
    assert not removed[0, 0] and removed[9, 9]


def _footprints_kept(mask: np.ndarray, out: np.ndarray) -> list[bool]:
    """Per 8-connected lesion of `mask`: does `out` keep a pixel holding one of its pixel centres?"""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    fr, fc = out.shape[0] / mask.shape[0], out.shape[1] / mask.shape[1]
    kept = []
    for k in range(1, n + 1):
        rr, cc = np.nonzero(labels == k)
        kept.append(bool(out[((rr + 0.5) * fr).astype(int), ((cc + 0.5) * fc).astype(int)].any()))
    return kept


@pytest.mark.parametrize("size_px", [2, 3, 4])
def test_small_lesions_survive_1024_to_256(size_px: int) -> None:
    """Issue 14: an anti-aliased resize dropped every 3 px lesion and 88 % of 4 px ones at
    1024² → 256². Every lesion (square and disc-like, at every sub-pixel offset) keeps ≥ 1 px."""
    from lesion_studio.core.geometry.crops import resize_mask

    rng = np.random.default_rng(size_px)
    mask = np.zeros((1024, 1024), bool)
    for i in range(12):
        for j in range(12):                      # one lesion per 80 px cell, at a random offset
            r, c = 20 + 80 * i + int(rng.integers(0, 4)), 20 + 80 * j + int(rng.integers(0, 4))
            if (i + j) % 2 or size_px == 2:
                mask[r:r + size_px, c:c + size_px] = True
            else:                                # a plus shape, the closest to a disc at this size
                mask[r:r + size_px, c + size_px // 2] = True
                mask[r + size_px // 2, c:c + size_px] = True
    out = resize_mask(mask, (256, 256))
    kept = _footprints_kept(mask, out)
    assert len(kept) > 100 and all(kept)


def test_large_lesions_keep_their_area_and_neighbours_do_not_stand_in() -> None:
    from lesion_studio.core.geometry.crops import resize_mask

    yy, xx = np.mgrid[:1024, :1024]
    disc = (yy - 500.3) ** 2 + (xx - 400.7) ** 2 < 60 ** 2
    out = resize_mask(disc, (256, 256))
    assert out.sum() == pytest.approx(disc.sum() / 16, rel=0.02)
    # a thin diagonal lesion whose bounding box holds a neighbour's kept pixel still keeps its
    # own pixel: lost or not is judged on its footprint, not on its box
    mask = np.zeros((1024, 1024), bool)
    mask[np.arange(8), np.arange(8)] = True      # covers output (0, 0) and (1, 1) a quarter each
    mask[0:3, 5:8] = True                        # 9/16 of output (0, 1), not touching the diagonal
    out = resize_mask(mask, (256, 256))
    assert out[0, 1] and all(_footprints_kept(mask, out))
    # nearest neighbour, by contrast, loses small lesions (why the default is "soft")
    sparse = np.zeros((1024, 1024), bool)
    sparse[1:3, 1:3] = True
    assert not resize_mask(sparse, (256, 256), method="nearest").any()
    assert resize_mask(sparse, (256, 256)).sum() == 1
