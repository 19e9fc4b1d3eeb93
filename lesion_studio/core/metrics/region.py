"""Region-wise (connected-component) counts and scores (P0 Eq. 10–15), recall by lesion size
(P0 §V-D) and P2's thresholded precision/recall (P2 §4.1)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesion_studio.core.metrics.pixel import fbeta, safe_div

#: 8-connectivity: diagonal neighbours belong to the same lesion (scipy's full 3×3 structure).
CONNECTIVITY_8 = np.ones((3, 3), dtype=bool)
#: P0 §V-D size groups at 1024² pixels: small 0–200 px, medium 201–500 px, large > 500 px.
SIZE_GROUP_BOUNDS_1024_PX = (200.0, 500.0)
SIZE_GROUPS = ("small", "medium", "large")
#: P0 Eq. 10–12 overlap fraction.
REGION_OVERLAP = 0.5
#: P2 §4.1: false positives under 200 px are ignored, true positives with Dice < 0.25 not counted.
P2_MIN_FP_AREA_PX = 200
P2_MIN_TP_DICE = 0.25


def label_components(mask: np.ndarray, structure: np.ndarray = CONNECTIVITY_8) -> tuple[np.ndarray, int]:
    """Connected components of a bool mask: `(labels int32 (H, W), count)`."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=structure)
    return labels.astype(np.int32), int(n)


@dataclass(frozen=True)
class RegionCounts:
    """TP_r, FN_r, FP_r (P0 Eq. 10–12) plus the area in px of each ground-truth component and
    whether it was detected, so size-group recall can be pooled over images."""

    tp: int
    fn: int
    fp: int
    gt_areas_px: tuple[int, ...] = ()
    gt_detected: tuple[bool, ...] = ()

    def __add__(self, other: "RegionCounts") -> "RegionCounts":
        return RegionCounts(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp,
                            self.gt_areas_px + other.gt_areas_px, self.gt_detected + other.gt_detected)


def region_counts(pred: np.ndarray, gt: np.ndarray, *, overlap: float = REGION_OVERLAP,
                  structure: np.ndarray = CONNECTIVITY_8) -> RegionCounts:
    """P0 Eq. 10–12 on one image.

    TP_r: ground-truth components G_i with |G_i ∩ P| / |G_i| ≥ 0.5 (P = the whole prediction);
    FN_r: the other G_i; FP_r: predicted components P_j with |P_j ∩ G| / |P_j| < 0.5.
    Touching lesions form one component (8-connectivity), as they do in P0's labelling.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    g_lab, n_g = label_components(gt, structure)
    p_lab, n_p = label_components(pred, structure)
    idx_g = np.arange(1, n_g + 1)
    idx_p = np.arange(1, n_p + 1)
    g_area = ndimage.sum_labels(np.ones_like(gt, dtype=np.int64), g_lab, idx_g) if n_g else np.zeros(0)
    g_hit = ndimage.sum_labels(pred, g_lab, idx_g) if n_g else np.zeros(0)
    p_area = ndimage.sum_labels(np.ones_like(pred, dtype=np.int64), p_lab, idx_p) if n_p else np.zeros(0)
    p_hit = ndimage.sum_labels(gt, p_lab, idx_p) if n_p else np.zeros(0)
    detected = g_hit / np.maximum(g_area, 1) >= overlap
    fp = int(np.count_nonzero(p_hit / np.maximum(p_area, 1) < overlap))
    return RegionCounts(tp=int(detected.sum()), fn=int(n_g - detected.sum()), fp=fp,
                        gt_areas_px=tuple(int(a) for a in g_area),
                        gt_detected=tuple(bool(d) for d in detected))


def region_scores(counts: RegionCounts | Iterable[RegionCounts], *, zero_division: float = 0.0) -> dict[str, float]:
    """Region-wise recall (Eq. 13), precision (Eq. 14), F1 and F2 (Eq. 15) of pooled counts."""
    if not isinstance(counts, RegionCounts):
        counts = sum(counts, RegionCounts(0, 0, 0))
    recall = safe_div(counts.tp, counts.tp + counts.fn, zero_division)
    precision = safe_div(counts.tp, counts.tp + counts.fp, zero_division)
    return {"precision": precision, "recall": recall, "f1": fbeta(precision, recall, 1.0),
            "f2": fbeta(precision, recall, 2.0), "tp": counts.tp, "fn": counts.fn, "fp": counts.fp}


def size_group_bounds_px(image_shape: tuple[int, int]) -> tuple[float, float]:
    """P0's small/medium upper bounds (200, 500 px at 1024²) scaled by the image area."""
    scale = float(image_shape[0]) * float(image_shape[1]) / (1024.0 * 1024.0)
    return SIZE_GROUP_BOUNDS_1024_PX[0] * scale, SIZE_GROUP_BOUNDS_1024_PX[1] * scale


def size_group_of(area_px: float, bounds_px: tuple[float, float]) -> str:
    """'small' (≤ first bound), 'medium' (≤ second) or 'large'."""
    return "small" if area_px <= bounds_px[0] else "medium" if area_px <= bounds_px[1] else "large"


def size_group_recall(counts: RegionCounts | Iterable[RegionCounts], image_shape: tuple[int, int]) -> dict[str, dict[str, float]]:
    """Region-wise recall per P0 size group (§V-D), bounds scaled to `image_shape`'s area.

    Returns `{group: {"recall": r (NaN when the group is empty), "n": lesions, "detected": k}}`.
    """
    if not isinstance(counts, RegionCounts):
        counts = sum(counts, RegionCounts(0, 0, 0))
    bounds = size_group_bounds_px(image_shape)
    out = {g: {"n": 0, "detected": 0} for g in SIZE_GROUPS}
    for area, hit in zip(counts.gt_areas_px, counts.gt_detected, strict=True):
        group = out[size_group_of(area, bounds)]
        group["n"] += 1
        group["detected"] += int(hit)
    for group in out.values():
        group["recall"] = group["detected"] / group["n"] if group["n"] else float("nan")
    return out


def thresholded_counts(pred: np.ndarray, gt: np.ndarray, *, min_fp_area_px: float = P2_MIN_FP_AREA_PX,
                       min_tp_dice: float = P2_MIN_TP_DICE,
                       structure: np.ndarray = CONNECTIVITY_8) -> tuple[int, int, int]:
    """P2 §4.1 thresholded `(TP, FP, FN)` on one image.

    Each ground-truth component is a TP when the Dice between it and the predicted components
    that overlap it is ≥ `min_tp_dice` (0.25), else a FN. Each predicted component that
    overlaps no ground truth is a FP unless its area is under `min_fp_area_px` (200 px in P2,
    at P2's resolution: scale it for other image sizes).
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    g_lab, n_g = label_components(gt, structure)
    p_lab, n_p = label_components(pred, structure)
    tp = fn = fp = 0
    for i in range(1, n_g + 1):
        g = g_lab == i
        touching = np.unique(p_lab[g])
        touching = touching[touching > 0]
        s = np.isin(p_lab, touching) if touching.size else np.zeros_like(g)
        inter = np.count_nonzero(s & g)
        d = 2.0 * inter / (np.count_nonzero(s) + np.count_nonzero(g))
        if touching.size and d >= min_tp_dice:
            tp += 1
        else:
            fn += 1
    for j in range(1, n_p + 1):
        p = p_lab == j
        if not np.any(p & gt) and np.count_nonzero(p) >= min_fp_area_px:
            fp += 1
    return tp, fp, fn
