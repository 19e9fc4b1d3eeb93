"""Detection metrics: matching at IoU 0.2, FROC against a brute-force recomputation, NODE21, AP."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion_studio.core.metrics import (
    average_precision, froc_auc, froc_curve, froc_sensitivities, match_detections, masks_to_boxes,
    node21_score,
)
from lesion_studio.core.metrics.detection import box_iou


def test_iou_and_matching_threshold():
    gt = np.array([[0, 0, 10, 10]], float)
    assert box_iou(gt, gt)[0, 0] == 1.0
    # IoU of [0,0,10,10] and [5,0,15,10] = 50 / 150
    assert box_iou(gt, [[5, 0, 15, 10]])[0, 0] == pytest.approx(1 / 3)
    # IoU 0.2 exactly matches; just below does not
    just = np.array([[0, 0, 10, 20]], float)   # IoU 0.5
    assert match_detections(just, [1.0], gt)[0].all()
    at = np.array([[0, 0, 10, 50]], float)     # IoU = 100 / 500 = 0.2
    below = np.array([[0, 0, 10, 51]], float)  # IoU < 0.2
    assert match_detections(at, [1.0], gt)[0].all()
    assert not match_detections(below, [1.0], gt)[0].any()


def test_duplicates_are_false_positives_and_higher_score_wins():
    gt = np.array([[0, 0, 10, 10]], float)
    preds = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], float)
    is_tp, matched = match_detections(preds, [0.2, 0.9], gt)
    assert is_tp.tolist() == [False, True] and matched.tolist() == [True]


def test_froc_hand_computed():
    gts = [np.array([[0, 0, 10, 10]], float), np.zeros((0, 4)), np.array([[20, 20, 30, 30]], float)]
    boxes = [np.array([[0, 0, 10, 10], [40, 40, 50, 50]], float), np.array([[5, 5, 9, 9]], float),
             np.zeros((0, 4))]
    scores = [np.array([0.9, 0.6]), np.array([0.7]), np.zeros(0)]
    curve = froc_curve(boxes, scores, gts)
    # thresholds 0.9 (1 TP), 0.7 (+1 FP), 0.6 (+1 FP); 2 lesions, 3 images
    assert curve.sensitivity.tolist() == [0.0, 0.5, 0.5, 0.5]
    assert curve.fp_per_image.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3])
    sens = froc_sensitivities(curve, (0.125, 0.25, 1.0))
    assert sens == {0.125: 0.5, 0.25: 0.5, 1.0: 0.5}
    assert froc_auc(curve) == pytest.approx(0.5)
    node = node21_score(boxes, scores, gts)
    # image scores 0.9 (lesion), 0.7 (no lesion), 0 (lesion): AUC = 1/2
    assert node["image_auc"] == pytest.approx(0.5)
    assert node["node21_score"] == pytest.approx(0.75 * 0.5 + 0.25 * 0.5)


def test_empty_predictions_and_empty_ground_truth():
    gts = [np.array([[0, 0, 4, 4]], float)]
    curve = froc_curve([np.zeros((0, 4))], [np.zeros(0)], gts)
    assert curve.sensitivity.tolist() == [0.0] and froc_auc(curve) == 0.0
    assert average_precision([np.zeros((0, 4))], [np.zeros(0)], gts) == 0.0
    curve = froc_curve([np.array([[0, 0, 4, 4]], float)], [np.array([0.5])], [np.zeros((0, 4))])
    assert curve.fp_per_image.tolist() == [0.0, 1.0] and curve.n_lesions == 0
    assert math.isnan(average_precision([np.zeros((0, 4))], [np.zeros(0)], [np.zeros((0, 4))]))


def test_average_precision_hand_computed():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    boxes = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], float)]
    # ranked TP, FP, TP: precision envelope 1 at recall .5, 2/3 at recall 1
    ap = average_precision(boxes, [np.array([0.9, 0.8, 0.7])], gts)
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(boxes, [np.array([0.9, 0.1, 0.7])], gts) == pytest.approx(1.0)


def test_masks_to_boxes():
    m = np.zeros((10, 10), bool)
    m[1:3, 2:5] = True
    m[6, 6] = True
    assert masks_to_boxes(m).tolist() == [[2, 1, 5, 3], [6, 6, 7, 7]]
    assert masks_to_boxes(np.zeros((4, 4), bool)).shape == (0, 4)


# -- brute force ------------------------------------------------------------------------------
def brute_force_point(boxes, scores, gts, threshold):
    """Re-match from scratch keeping only predictions scoring >= threshold (independent loop)."""
    found = fps = n = 0
    for b, s, g in zip(boxes, scores, gts):
        keep = [i for i in sorted(range(len(s)), key=lambda i: -s[i]) if s[i] >= threshold]
        taken = set()
        for i in keep:
            best, best_iou = None, -1.0
            for j in range(len(g)):
                x0, y0 = max(b[i][0], g[j][0]), max(b[i][1], g[j][1])
                x1, y1 = min(b[i][2], g[j][2]), min(b[i][3], g[j][3])
                inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
                union = ((b[i][2] - b[i][0]) * (b[i][3] - b[i][1])
                         + (g[j][2] - g[j][0]) * (g[j][3] - g[j][1]) - inter)
                iou = inter / union if union > 0 else 0.0
                if j not in taken and iou >= 0.2 and iou > best_iou:
                    best, best_iou = j, iou
            if best is None:
                fps += 1
            else:
                taken.add(best)
        found += len(taken)
        n += len(g)
    return fps / len(gts), (found / n if n else 0.0)


box = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(2, 10), st.integers(2, 10)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])
image = st.tuples(st.lists(box, max_size=4),
                  st.lists(st.tuples(box, st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9])), max_size=5))


@settings(max_examples=60, deadline=None)
@given(st.lists(image, min_size=1, max_size=4))
def test_froc_matches_brute_force_and_is_monotone(images):
    gts = [np.array(g, float).reshape(-1, 4) for g, _ in images]
    boxes = [np.array([p for p, _ in preds], float).reshape(-1, 4) for _, preds in images]
    scores = [np.array([s for _, s in preds], float) for _, preds in images]
    curve = froc_curve(boxes, scores, gts)
    for fp, sens, thr in zip(curve.fp_per_image, curve.sensitivity, curve.thresholds):
        if np.isfinite(thr):
            bf_fp, bf_sens = brute_force_point([b.tolist() for b in boxes], [s.tolist() for s in scores],
                                               [g.tolist() for g in gts], thr)
            assert fp == pytest.approx(bf_fp) and sens == pytest.approx(bf_sens)
    assert np.all(np.diff(curve.fp_per_image) >= 0)
    rates = np.linspace(0, 10, 41)
    sens = list(froc_sensitivities(curve, rates).values())
    assert all(b >= a for a, b in zip(sens, sens[1:]))      # non-decreasing in the FP rate
    assert 0.0 <= froc_auc(curve) <= 1.0


def test_luna16_style_froc_hand_made_case():
    """Hit = box centre within the lesion's radius (half its moment diameter), extra hits
    ignored, sensitivities by linear interpolation, CPM = their mean (LUNA16's read-out)."""
    from lesion_studio.core.metrics import froc_curve, lesion_discs, luna_froc, masks_to_boxes

    lesions = np.zeros((64, 64), bool)
    lesions[10:14, 10:14] = True                 # A: centre (12, 12), moment diameter 4·√1.25 → r 2.236
    lesions[30:32, 30:32] = True                 # B: centre (31, 31), moment diameter 2 → r 1
    discs = [lesion_discs(lesions), lesion_discs(np.zeros((64, 64), bool))]
    assert discs[0].centres.tolist() == [[12.0, 12.0], [31.0, 31.0]]
    assert discs[0].radii.tolist() == pytest.approx([np.sqrt(5.0), 1.0])
    boxes = [np.array([[10, 10, 14, 14],         # hits A (0.65)
                       [10, 11, 14, 15],         # centre (13, 12): a second hit on A, ignored
                       [50, 50, 52, 52],         # false positive
                       [30, 30, 32, 32]], float),  # hits B (0.4)
             np.array([[5, 5, 7, 7], [20, 20, 22, 22]], float)]   # two false positives
    scores = [np.array([0.65, 0.55, 0.7, 0.4]), np.array([0.6, 0.5])]
    res = luna_froc(boxes, scores, discs)
    # thresholds .7 .65 .6 .5 .4 → FP/image .5 .5 1 1.5 1.5, sensitivity 0 .5 .5 .5 1
    assert res.fp_per_image.tolist() == [0.0, 0.5, 0.5, 1.0, 1.5, 1.5]
    assert res.sensitivity.tolist() == [0.0, 0.0, 0.5, 0.5, 0.5, 1.0]
    expected = {0.125: 0.125, 0.25: 0.25, 0.5: 0.5, 1.0: 0.5, 2.0: 1.0, 4.0: 1.0, 8.0: 1.0}
    assert res.sensitivities == pytest.approx(expected)        # linear between (0, 0) and (0.5, 0.5)
    assert res.cpm == pytest.approx(4.375 / 7)
    # the box-IoU FROC counts the second hit on A as a false positive: 4 FPs in all, not 3
    iou = froc_curve(boxes, scores, [masks_to_boxes(lesions), np.zeros((0, 4))])
    assert iou.fp_per_image[-1] == 2.0 and res.fp_per_image[-1] == 1.5
