"""Image quality measures (SPEC §2.7) against hand computations and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from lesion_studio.models.metrics import fft_mean_magnitude, fid, laplacian_variance, quality, ssim_map


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 2) * 2, -1, 1).astype(np.float32)


def test_identical_images_are_perfect() -> None:
    x = _image()
    q = quality(x, x)
    assert q["mae"] == 0 and q["mse"] == 0 and math.isinf(q["psnr"])
    assert q["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_constant_offset_gives_hand_computed_errors() -> None:
    real = _image()
    fake = real + 0.1
    q = quality(fake, real, data_range=2.0)
    assert q["mae"] == pytest.approx(0.1, abs=1e-6)
    assert q["mse"] == pytest.approx(0.01, abs=1e-6)
    assert q["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-3)


def test_masked_measures_count_only_the_mask() -> None:
    real = np.zeros((32, 32), np.float32)
    fake = real.copy()
    mask = np.zeros((32, 32), np.float32)
    mask[8:16, 8:16] = 1
    fake[mask > 0] = 0.5
    q = quality(fake, real, mask)
    assert q["masked_l1"] == pytest.approx(0.5)
    assert q["masked_mse"] == pytest.approx(0.25)
    assert q["mae"] == pytest.approx(0.5 * 64 / 1024)


def test_ssim_matches_scikit_image_away_from_the_border() -> None:
    real, fake = _image(1), _image(2) * 0.5 + _image(1) * 0.5
    ours = ssim_map(torch.from_numpy(fake), torch.from_numpy(real), data_range=2.0)[0, 0].numpy()
    _, theirs = structural_similarity(
        fake, real, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    inner = (slice(6, -6), slice(6, -6))  # both use an 11×11 window; borders are padded differently
    np.testing.assert_allclose(ours[inner], theirs[inner], atol=1e-4)


def test_blurriness_measures_drop_when_an_image_is_blurred() -> None:
    sharp = np.random.default_rng(3).normal(0, 1, (64, 64)).astype(np.float32)
    blurred = ndimage.gaussian_filter(sharp, 2).astype(np.float32)
    assert laplacian_variance(blurred) < 0.2 * laplacian_variance(sharp)
    assert fft_mean_magnitude(blurred) < fft_mean_magnitude(sharp)
    assert laplacian_variance(np.ones((16, 16), np.float32)) == 0.0


def test_fid_says_why_it_is_unavailable_instead_of_a_number() -> None:
    x = torch.zeros(2, 1, 32, 32)
    result = fid(x, x)
    if result.available:  # only when torchmetrics + local Inception weights exist
        assert result.value is not None and result.value >= 0
    else:
        assert result.value is None and "unavailable" in result.reason
