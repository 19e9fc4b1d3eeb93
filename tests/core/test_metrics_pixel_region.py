"""Pixel-wise and region-wise metrics against hand-computed cases and properties (P0 Eq. 10–15)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion_studio.core.metrics import (
    RegionCounts, dice, fbeta, mean_dice, pixel_scores, region_counts, region_scores,
    size_group_bounds_px, size_group_recall, thresholded_counts,
)


def square(shape, r0, c0, size):
    m = np.zeros(shape, bool)
    m[r0:r0 + size, c0:c0 + size] = True
    return m


def test_pixel_scores_hand_computed():
    gt = square((10, 10), 0, 0, 4)          # 16 px
    pred = square((10, 10), 2, 0, 4)        # 16 px, 8 overlap
    s = pixel_scores([pred], [gt])
    assert (s["tp"], s["fp"], s["fn"]) == (8, 8, 8)
    assert s["precision"] == s["recall"] == 0.5
    assert s["f1"] == pytest.approx(0.5)
    assert s["f2"] == pytest.approx(0.5)
    assert dice(pred, gt) == pytest.approx(0.5)


def test_fbeta_formula():
    assert fbeta(0.5, 1.0, 2.0) == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))
    assert fbeta(0.0, 0.0) == 0.0


def test_empty_prediction_and_empty_ground_truth():
    gt = square((8, 8), 1, 1, 3)
    empty = np.zeros((8, 8), bool)
    s = pixel_scores([empty], [gt])
    assert s["recall"] == 0 and s["precision"] == 0 and s["f1"] == 0
    assert dice(empty, gt) == 0.0
    assert math.isnan(dice(empty, empty))
    assert dice(empty, empty, empty=1.0) == 1.0
    # an image with nothing on either side does not move the mean Dice
    assert mean_dice([gt, empty], [gt, empty]) == 1.0
    c = region_counts(empty, gt)
    assert (c.tp, c.fn, c.fp) == (0, 1, 0)
    c = region_counts(gt, empty)
    assert (c.tp, c.fn, c.fp) == (0, 0, 1)
    assert region_scores(RegionCounts(0, 0, 0))["recall"] == 0.0


def test_region_counts_hand_computed():
    shape = (20, 20)
    g1 = square(shape, 0, 0, 4)              # 16 px: half covered -> TP (>= 0.5)
    g2 = square(shape, 10, 10, 4)            # missed -> FN
    gt = g1 | g2
    p1 = square(shape, 0, 0, 2) | square(shape, 2, 0, 2)   # 8 px of g1, all inside G -> not FP
    p2 = square(shape, 16, 0, 3)             # outside -> FP
    pred = p1 | p2
    c = region_counts(pred, gt)
    assert (c.tp, c.fn, c.fp) == (1, 1, 1)
    s = region_scores(c)
    assert s["recall"] == 0.5 and s["precision"] == 0.5
    # a prediction with 2 of 5 px on the lesion is a FP, although it hits the lesion
    pred2 = np.zeros(shape, bool)
    pred2[0, 2:7] = True                     # 2 px inside g1, 3 outside
    c2 = region_counts(pred2, g1)
    assert (c2.tp, c2.fn, c2.fp) == (0, 1, 1)


def test_touching_components_merge():
    shape = (12, 12)
    a = square(shape, 0, 0, 3)               # 9 px
    b = square(shape, 3, 3, 4)               # 16 px, touches a diagonally: one 8-connected lesion
    c = region_counts(a, a | b)
    assert (c.tp, c.fn, c.fp) == (0, 1, 0)   # 9 / 25 < 0.5 of the merged lesion
    assert c.gt_areas_px == (25,)
    c = region_counts(a | b, a)              # the merged prediction: 9 / 25 of it on G -> FP
    assert (c.tp, c.fn, c.fp) == (1, 0, 1)


def test_size_groups_scale_with_area():
    assert size_group_bounds_px((1024, 1024)) == (200.0, 500.0)
    assert size_group_bounds_px((256, 256)) == (12.5, 31.25)
    shape = (256, 256)
    small = square(shape, 0, 0, 3)           # 9 px <= 12.5
    medium = square(shape, 50, 50, 5)        # 25 px
    large = square(shape, 100, 100, 8)       # 64 px
    c = region_counts(small | large, small | medium | large)
    groups = size_group_recall(c, shape)
    assert groups["small"] == {"n": 1, "detected": 1, "recall": 1.0}
    assert groups["medium"]["recall"] == 0.0 and groups["large"]["recall"] == 1.0
    assert math.isnan(size_group_recall(RegionCounts(0, 0, 0), shape)["small"]["recall"])


def test_thresholded_counts_p2_rules():
    shape = (64, 64)
    gt = square(shape, 0, 0, 10)             # 100 px
    tiny_hit = square(shape, 0, 0, 2)        # Dice 8/104 < 0.25 -> not a TP
    small_fp = square(shape, 40, 40, 5)      # 25 px < 200 -> ignored
    big_fp = square(shape, 30, 0, 15)        # 225 px >= 200 -> FP
    assert thresholded_counts(tiny_hit | small_fp, gt) == (0, 0, 1)
    assert thresholded_counts(gt | big_fp, gt) == (1, 1, 0)
    assert thresholded_counts(small_fp, gt, min_fp_area_px=10) == (0, 1, 1)


masks = st.lists(st.tuples(st.integers(0, 28), st.integers(0, 28), st.integers(1, 6)),
                 min_size=0, max_size=6)


def draw(boxes, shape=(34, 34)):
    m = np.zeros(shape, bool)
    for r, c, s in boxes:
        m[r:r + s, c:c + s] = True
    return m


@settings(max_examples=40, deadline=None)
@given(masks, masks, st.randoms(use_true_random=False))
def test_region_counts_invariant_to_component_order(gt_boxes, pred_boxes, rnd):
    """Shuffling the order lesions are drawn in, or transposing both masks, changes no count."""
    gt, pred = draw(gt_boxes), draw(pred_boxes)
    rnd.shuffle(gt_boxes)
    rnd.shuffle(pred_boxes)
    c1 = region_counts(pred, gt)
    c2 = region_counts(draw(pred_boxes), draw(gt_boxes))
    c3 = region_counts(pred.T, gt.T)
    assert (c1.tp, c1.fn, c1.fp) == (c2.tp, c2.fn, c2.fp) == (c3.tp, c3.fn, c3.fp)
    assert sorted(c1.gt_areas_px) == sorted(c3.gt_areas_px)
    assert c1.tp + c1.fn == len(c1.gt_areas_px)


@settings(max_examples=40, deadline=None)
@given(masks, masks)
def test_pixel_scores_bounds_and_symmetry(gt_boxes, pred_boxes):
    gt, pred = draw(gt_boxes), draw(pred_boxes)
    s = pixel_scores([pred], [gt])
    t = pixel_scores([gt], [pred])
    assert 0 <= s["f1"] <= 1 and 0 <= s["f2"] <= 1
    assert s["precision"] == t["recall"] and s["f1"] == pytest.approx(t["f1"])
    if gt.any() or pred.any():
        assert dice(pred, gt) == pytest.approx(s["f1"])
