"""Detection metrics: box matching at IoU ≥ 0.2 (P3 §IV-C), FROC and its AUC, the NODE21
score, mAP@50 (P1 §3.1).

Conventions
-----------
* Boxes are `(N, 4)` float `(x0, y0, x1, y1)` in pixels, max corner exclusive; one array of
  boxes and one of scores per image.
* Matching is greedy in descending score order, per image: each prediction takes the still
  unmatched ground-truth box with the highest IoU ≥ `iou_threshold`; a prediction that finds
  none (also a second hit on an already found lesion) is a false positive. Because greedy
  matching of the top-k predictions is a prefix of the full matching, every FROC operating
  point follows from one sort (checked against a brute-force re-matching in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: P3 §IV-C / NODE21: a detection hits a nodule at IoU ≥ 0.2.
DETECTION_IOU = 0.2
#: FROC operating points: 1/8 … 8 false positives per image (LUNA16/NODE21 style).
FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: FP/image range of `froc_auc` (log2 axis), stated so that results can be compared.
FROC_AUC_RANGE = (0.125, 8.0)
#: NODE21 weights: 0.75·AUC + 0.25·sensitivity at 0.25 FP/image.
NODE21_AUC_WEIGHT = 0.75
NODE21_FP_RATE = 0.25


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU `(len(a), len(b))` of `(x0, y0, x1, y1)` boxes."""
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def masks_to_boxes(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """Bounding boxes `(N, 4)` of a bool mask's connected components (8-connectivity)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool),
                              structure=np.ones((3, 3), bool) if structure is None else structure)
    boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels)]
    return np.asarray(boxes, dtype=float).reshape(n, 4)


def match_detections(pred_boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray,
                     iou_threshold: float = DETECTION_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Greedy score-ordered matching on one image.

    Returns `(is_tp (N,) bool in the given order, gt_matched (M,) bool)`.
    """
    pred_boxes = np.asarray(pred_boxes, dtype=float).reshape(-1, 4)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=float).reshape(-1, 4)
    is_tp = np.zeros(len(pred_boxes), dtype=bool)
    gt_matched = np.zeros(len(gt_boxes), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return is_tp, gt_matched
    iou = box_iou(pred_boxes, gt_boxes)
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(~gt_matched & (iou[i] >= iou_threshold), iou[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= 0:
            gt_matched[j] = True
            is_tp[i] = True
    return is_tp, gt_matched


@dataclass(frozen=True)
class FrocCurve:
    """FROC operating points, one per distinct score threshold, starting at (0, 0).

    `fp_per_image` and `sensitivity` are non-decreasing; `thresholds[k]` is the lowest score
    kept at point k (+inf for the origin).
    """

    fp_per_image: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    n_images: int
    n_lesions: int

    def to_dict(self) -> dict:
        return {"fp_per_image": self.fp_per_image.tolist(), "sensitivity": self.sensitivity.tolist(),
                "thresholds": [None if not np.isfinite(t) else float(t) for t in self.thresholds],
                "n_images": self.n_images, "n_lesions": self.n_lesions}


def _pooled(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
            gt_boxes: Sequence[np.ndarray], iou_threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """All predictions' scores and TP flags pooled over images, and the number of lesions."""
    if not (len(pred_boxes) == len(pred_scores) == len(gt_boxes)):
        raise ValueError("one entry of boxes, scores and ground truth per image is needed")
    all_scores, all_tp, n_lesions = [], [], 0
    for boxes, scores, gt in zip(pred_boxes, pred_scores, gt_boxes):
        is_tp, _ = match_detections(boxes, scores, gt, iou_threshold)
        all_scores.append(np.asarray(scores, dtype=float).reshape(-1))
        all_tp.append(is_tp)
        n_lesions += len(np.asarray(gt).reshape(-1, 4))
    return np.concatenate(all_scores or [np.zeros(0)]), np.concatenate(all_tp or [np.zeros(0, bool)]), n_lesions


def froc_curve(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
               gt_boxes: Sequence[np.ndarray], iou_threshold: float = DETECTION_IOU) -> FrocCurve:
    """FROC: lesion sensitivity against mean false positives per image over all thresholds."""
    scores, is_tp, n_lesions = _pooled(pred_boxes, pred_scores, gt_boxes, iou_threshold)
    n_images = len(gt_boxes)
    order = np.argsort(-scores, kind="stable")
    scores, is_tp = scores[order], is_tp[order]
    tp_cum = np.cumsum(is_tp)
    fp_cum = np.cumsum(~is_tp)
    # one point per distinct threshold: the last index of each run of equal scores
    last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1] if len(scores) else np.zeros(0, int)
    fp = np.r_[0.0, fp_cum[last] / max(n_images, 1)]
    sens = np.r_[0.0, tp_cum[last] / n_lesions if n_lesions else np.zeros(len(last))]
    thr = np.r_[np.inf, scores[last]]
    return FrocCurve(fp, sens, thr, n_images, n_lesions)


def froc_sensitivities(curve: FrocCurve, fp_rates: Sequence[float] = FROC_FP_RATES) -> dict[float, float]:
    """Sensitivity at each FP/image rate: the best operating point with mean FP ≤ the rate."""
    out = {}
    for rate in fp_rates:
        ok = curve.fp_per_image <= rate + 1e-12
        out[float(rate)] = float(curve.sensitivity[ok].max()) if ok.any() else 0.0
    return out


def froc_auc(curve: FrocCurve, fp_range: tuple[float, float] = FROC_AUC_RANGE, *, n_points: int = 256) -> float:
    """Normalised area under the FROC over `fp_range` FP/image on a log2 FP axis, in [0, 1].

    The curve is read as a step function (`froc_sensitivities`) at `n_points` log-spaced FP
    rates in [0.125, 8] by default and averaged: 1.0 means every lesion found at 1/8 FP/image.
    (The CPM of LUNA16 is the mean of `froc_sensitivities` at the seven rates instead.)
    """
    low, high = fp_range
    rates = np.exp2(np.linspace(np.log2(low), np.log2(high), n_points))
    values = np.array(list(froc_sensitivities(curve, rates).values()))
    return float(np.trapezoid(values, np.log2(rates)) / (np.log2(high) - np.log2(low)))


def image_scores_from_boxes(pred_scores: Sequence[np.ndarray]) -> np.ndarray:
    """Image-level lesion likelihood: the highest box score of the image, 0 without boxes."""
    return np.array([float(np.max(s)) if np.size(s) else 0.0 for s in pred_scores])


def node21_score(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                 gt_boxes: Sequence[np.ndarray], iou_threshold: float = DETECTION_IOU) -> dict[str, float]:
    """NODE21 detection-track score = 0.75·AUC + 0.25·sensitivity at 0.25 FP/image.

    As the NODE21 challenge defines it (node21.grand-challenge.org, cited by P3 §IV-C), the
    AUC is the **image-level ROC AUC** of nodule presence, the image score being the highest
    box score of the image; the sensitivity is read from the lesion FROC at 0.25 mean false
    positives per image with hits at IoU ≥ 0.2. It is NOT the FROC AUC (see `froc_auc`).
    Returns the score and both parts; the AUC is NaN (and so the score) when all images have
    the same label.
    """
    from lesion_studio.core.metrics.classification import roc_auc

    labels = np.array([len(np.asarray(g).reshape(-1, 4)) > 0 for g in gt_boxes])
    auc = roc_auc(labels, image_scores_from_boxes(pred_scores))
    sens = froc_sensitivities(froc_curve(pred_boxes, pred_scores, gt_boxes, iou_threshold),
                              (NODE21_FP_RATE,))[NODE21_FP_RATE]
    return {"node21_score": NODE21_AUC_WEIGHT * auc + (1 - NODE21_AUC_WEIGHT) * sens,
            "image_auc": auc, "sensitivity_at_0.25": sens}


def average_precision(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                      gt_boxes: Sequence[np.ndarray], iou_threshold: float = 0.5) -> float:
    """AP of one lesion class at IoU ≥ 0.5 (mAP@50 of P1 §3.1 for a single class).

    All-point interpolation (PASCAL VOC 2010+): the area under the precision envelope of the
    precision–recall curve. NaN when there is no lesion.
    """
    scores, is_tp, n_lesions = _pooled(pred_boxes, pred_scores, gt_boxes, iou_threshold)
    if n_lesions == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    recall = np.r_[0.0, tp / n_lesions, 1.0]
    precision = np.r_[1.0, tp / np.maximum(tp + fp, 1), 0.0]
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))
