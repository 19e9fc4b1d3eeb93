"""Does anything but the lesion tell real from synthetic patches? A check the builder runs.

A trivial classifier — nearest class mean on standardized features, leave-one-out — is
trained on what a curious reader (or a careless script) could look at without reading the
image: per patch a 16-bin intensity histogram over the pooled 1-99 % range, its mean and
standard deviation, and the share of non-whole values. Its accuracy is compared with chance
(exact binomial test). The file-level side (size, header bytes, mtime order) is equal by
construction in the builder and checked by the tests.

An accuracy above chance here does not mean the builder leaks: the pixel statistics of the
synthetic lesions themselves may differ (denser or fainter than real ones) — exactly what a
reader study is there to find out. The builder reports the number and warns.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import binomtest

HISTOGRAM_BINS = 16


def intensity_features(patches: Sequence[np.ndarray]) -> np.ndarray:
    """`(N, 19)`: 16-bin histogram (shares, pooled 1-99 % range), mean, std, non-whole share."""
    flat = np.concatenate([np.asarray(p, np.float64).ravel() for p in patches])
    lo, hi = np.percentile(flat, [1.0, 99.0])
    hi = hi if hi > lo else lo + 1.0
    rows = []
    for p in patches:
        p = np.asarray(p, np.float64)
        hist, _ = np.histogram(np.clip(p, lo, hi), HISTOGRAM_BINS, (lo, hi))
        rows.append([*(hist / p.size), p.mean(), p.std(), float(np.mean(p != np.round(p)))])
    return np.asarray(rows, dtype=np.float64)


def loo_nearest_mean(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions (0/1) of a nearest-class-mean classifier on z-scored features."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels).astype(int)
    sd = x.std(0)
    x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    pred = np.zeros(len(y), dtype=int)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        means = [x[keep & (y == k)].mean(0) if np.any(keep & (y == k)) else np.full(x.shape[1], np.inf)
                 for k in (0, 1)]
        dist = [float(np.sum((x[i] - m) ** 2)) for m in means]
        pred[i] = int(dist[1] < dist[0])
    return pred


def intensity_check(patches: Sequence[np.ndarray], synthetic: Sequence[bool]) -> dict:
    """`{n, accuracy, accuracy_ci, p_value, features}` of the trivial classifier (see the docstring)."""
    y = np.asarray(synthetic, dtype=int)
    if len(y) < 4 or y.min() == y.max():
        return {"n": int(len(y)), "accuracy": None, "accuracy_ci": None, "p_value": None,
                "features": "too few cases to check"}
    pred = loo_nearest_mean(intensity_features(patches), y)
    k, n = int(np.sum(pred == y)), int(len(y))
    test = binomtest(k, n, 0.5)
    ci = test.proportion_ci(0.95, method="exact")
    return {"n": n, "accuracy": k / n, "accuracy_ci": [float(ci.low), float(ci.high)], "p_value": float(test.pvalue),
            "features": f"{HISTOGRAM_BINS}-bin histogram, mean, std, non-whole share; nearest mean, leave-one-out"}
