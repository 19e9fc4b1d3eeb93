"""Pixel-wise recall, precision, F-scores and Dice, background class ignored (P0 §V, P2 Eq. 2)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def safe_div(num: float, den: float, zero_division: float = 0.0) -> float:
    """`num / den`, or `zero_division` when `den == 0` (scikit-learn's convention)."""
    return float(num) / float(den) if den > 0 else float(zero_division)


def fbeta(precision: float, recall: float, beta: float = 1.0) -> float:
    """F_beta = (β²+1)·P·R / (β²·P + R) (P0 Eq. 15); 0 when P = R = 0. β = 2 weights recall more."""
    b2 = beta * beta
    den = b2 * precision + recall
    return float((b2 + 1.0) * precision * recall / den) if den > 0 else 0.0


def pixel_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """Lesion-pixel `(TP, FP, FN)` of bool `(H, W)` masks; background (true negatives) is ignored."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    tp = int(np.count_nonzero(pred & gt))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(gt)) - tp


def pixel_scores(
    preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], *, zero_division: float = 0.0
) -> dict[str, float]:
    """Pixel-wise precision, recall, F1, F2 pooled over all images (P0 Table 3 "pixel-wise").

    TP/FP/FN are summed over the images first (micro average), so large lesions weigh more:
    that is what P0 criticises pixel-wise scores for and why region-wise ones exist.
    """
    tp = fp = fn = 0
    for p, g in zip(preds, gts, strict=True):
        a, b, c = pixel_counts(p, g)
        tp, fp, fn = tp + a, fp + b, fn + c
    precision = safe_div(tp, tp + fp, zero_division)
    recall = safe_div(tp, tp + fn, zero_division)
    return {"precision": precision, "recall": recall, "f1": fbeta(precision, recall, 1.0),
            "f2": fbeta(precision, recall, 2.0), "tp": tp, "fp": fp, "fn": fn}


def dice(pred: np.ndarray, gt: np.ndarray, *, empty: float = float("nan")) -> float:
    """Dice = 2|S∩G| / (|S|+|G|) of the lesion class (P2 Eq. 2); `empty` when both masks are empty.

    The default NaN for "no lesion and none predicted" keeps such images out of `mean_dice`
    (MONAI's `ignore_empty`); pass `empty=1.0` to count them as perfect.
    """
    tp, fp, fn = pixel_counts(pred, gt)
    den = 2 * tp + fp + fn
    return 2.0 * tp / den if den > 0 else float(empty)


def mean_dice(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], *, empty: float = float("nan")) -> float:
    """Dice per image averaged over the set (P2 §4.1), NaN images (both empty) skipped."""
    values = np.array([dice(p, g, empty=empty) for p, g in zip(preds, gts, strict=True)], dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
