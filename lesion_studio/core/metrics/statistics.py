"""Statistics over folds and methods (P0 §V-B, P4 §3.4): mean ± SD, two-sample t-test,
Friedman + Nemenyi post-hoc (Demšar 2006), critical difference, bootstrap confidence intervals.
SciPy and scikit-posthocs do the tests; this module only arranges the data."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof 1; 0 for one value) ignoring NaNs, as P0 reports "average ± S.D."."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def t_test(a: Sequence[float], b: Sequence[float], *, equal_var: bool = True) -> dict[str, float]:
    """Independent two-sample t-test (P0 §V-B: each method against the baseline).

    Student's test by default (`equal_var=False` gives Welch's). p is NaN when either sample
    has fewer than two values. Both samples constant (zero variance): identical constants give
    t = 0, p = 1 (no difference at all); different constants give t = ±inf and p = NaN, not
    SciPy's p = 0 — the test's variance estimate is zero, so it has no p-value to offer, and
    two folds that happen to agree exactly are no proof of an infinitely significant result.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return {"t": float("nan"), "p": float("nan")}
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        if a[0] == b[0]:
            return {"t": 0.0, "p": 1.0}
        return {"t": float(np.copysign(np.inf, a[0] - b[0])), "p": float("nan")}
    with warnings.catch_warnings():  # nearly identical fold values: scipy warns, p is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=equal_var)
    return {"t": float(res.statistic), "p": float(res.pvalue)}


def friedman_nemenyi(scores: Mapping[str, Sequence[float]], *, alpha: float = 0.05,
                     higher_is_better: bool = True) -> dict:
    """Friedman test over methods with blocks (folds × datasets), then the Nemenyi post-hoc.

    `scores[method][block]`: every method has a value for every block. Returns the Friedman
    chi², p, average ranks (1 = best), the pairwise Nemenyi p-value matrix
    (`scikit_posthocs.posthoc_nemenyi_friedman`), P4's direction matrix (+1 ranked
    significantly higher/better, −1 lower, 0 no difference) with its row sums (P4 Table 2),
    and the critical difference CD = q_α·√(k(k+1)/(6N)) of Demšar's CD diagram.
    Needs at least 3 methods and 2 blocks (scipy's Friedman requirement).
    """
    import scikit_posthocs as sp

    names = list(scores)
    data = np.array([np.asarray(scores[n], dtype=float) for n in names]).T  # (blocks, methods)
    k, n_blocks = len(names), data.shape[0]
    if k < 3 or n_blocks < 2:
        raise ValueError("the Friedman test needs at least 3 methods and 2 blocks")
    with warnings.catch_warnings():  # all ranks tied: chi² is NaN, scipy warns
        warnings.simplefilter("ignore", RuntimeWarning)
        chi2, p = stats.friedmanchisquare(*data.T)
    ranked = stats.rankdata(-data if higher_is_better else data, axis=1)
    avg_rank = ranked.mean(axis=0)
    nemenyi = sp.posthoc_nemenyi_friedman(data).to_numpy(dtype=float)
    direction = np.zeros((k, k), dtype=int)
    for i in range(k):
        for j in range(k):
            if i != j and nemenyi[i, j] < alpha:
                direction[i, j] = 1 if avg_rank[i] < avg_rank[j] else -1
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2.0)
    cd = float(q_alpha * np.sqrt(k * (k + 1) / (6.0 * n_blocks)))
    return {"methods": names, "friedman_chi2": float(chi2), "friedman_p": float(p),
            "average_ranks": {n: float(r) for n, r in zip(names, avg_rank)},
            "nemenyi_p": nemenyi.tolist(), "direction": direction.tolist(),
            "direction_sum": {n: int(s) for n, s in zip(names, direction.sum(axis=1))},
            "critical_difference": cd, "alpha": alpha, "n_blocks": n_blocks}


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (`scipy.stats.bootstrap`).

    With fewer than two distinct values the interval collapses to the mean.
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if np.unique(v).size < 2:
        return float(v.mean()), float(v.mean())
    res = stats.bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
