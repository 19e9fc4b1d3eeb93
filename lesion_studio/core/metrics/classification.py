"""Image-level classification metrics: ROC AUC and accuracy (P1 §3.2), via scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Image-level ROC AUC (lesion present vs. absent); NaN when only one class is present."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))


def image_level_scores(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC AUC and accuracy at `threshold` of image lesion scores (e.g. the highest box score)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    return {"image_auc": roc_auc(labels, scores),
            "image_accuracy": float(accuracy_score(labels, scores >= threshold)) if labels.size else float("nan")}
