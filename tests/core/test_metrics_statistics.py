"""Statistics and image-level metrics against hand-computed values and SciPy."""

import math

import numpy as np
import pytest

from lesion_studio.core.metrics import image_level_scores
from lesion_studio.core.metrics.statistics import bootstrap_ci, friedman_nemenyi, mean_sd, t_test


def test_mean_sd_and_t_test():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([4.0]) == (4.0, 0.0)
    # Student t for [1,2,3] vs [4,5,6]: t = -3 / sqrt(2/3) = -3.674
    res = t_test([1, 2, 3], [4, 5, 6])
    assert res["t"] == pytest.approx(-3.0 / math.sqrt(2 / 3))
    assert res["p"] == pytest.approx(0.0213, abs=1e-3)
    assert math.isnan(t_test([1.0], [2.0, 3.0])["p"])


def test_friedman_nemenyi_ranks_and_cd():
    scores = {"a": [0.9, 0.8, 0.85, 0.9], "b": [0.5, 0.6, 0.55, 0.5], "c": [0.7, 0.7, 0.65, 0.7]}
    res = friedman_nemenyi(scores)
    assert res["average_ranks"] == {"a": 1.0, "b": 3.0, "c": 2.0}
    assert res["friedman_chi2"] == pytest.approx(8.0)       # 12N/(k(k+1)) Σ R² − 3N(k+1)
    # Demšar 2006: q_0.05 = 2.343 for k = 3, CD = q·sqrt(k(k+1)/(6N))
    assert res["critical_difference"] == pytest.approx(2.343 * math.sqrt(12 / 24), abs=2e-3)
    assert res["direction"][0][1] == 1 and res["direction"][1][0] == -1
    assert res["direction_sum"]["a"] == 1
    with pytest.raises(ValueError):
        friedman_nemenyi({"a": [1, 2], "b": [2, 3]})


def test_bootstrap_ci_contains_mean():
    low, high = bootstrap_ci([0.6, 0.7, 0.8, 0.65, 0.75])
    assert low < 0.7 < high
    assert bootstrap_ci([0.5, 0.5]) == (0.5, 0.5)


def test_image_level_scores():
    out = image_level_scores([True, False, True, False], [0.9, 0.2, 0.4, 0.6])
    assert out["image_auc"] == pytest.approx(0.75)
    assert out["image_accuracy"] == pytest.approx(0.5)
    assert math.isnan(image_level_scores([True, True], [0.1, 0.2])["image_auc"])


def test_t_test_on_constant_samples():
    """Issue 14: SciPy gives p = 0 for two different constants (and NaN for equal ones)."""
    assert t_test([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) == {"t": 0.0, "p": 1.0}   # identical: no difference
    different = t_test([0.0, 0.0], [1.0, 1.0])
    assert different["t"] == -math.inf and math.isnan(different["p"])      # undefined, never "p = 0"
    assert t_test([1.0, 1.0], [0.0, 0.0])["t"] == math.inf
    # one constant sample against a varying one is an ordinary Student test
    res = t_test([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])   # pooled variance 0.5: t = −1 / √(0.5 · 2/3)
    assert res["t"] == pytest.approx(-math.sqrt(3.0)) and res["p"] == pytest.approx(0.1583, abs=1e-3)
