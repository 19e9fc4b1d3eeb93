"""Quality measures of generated images (SPEC §2.7): pixel errors, SSIM, blurriness, FID.

Images are `(N, 1, H, W)` tensors (or `(H, W)` arrays) on one value scale; `data_range` is
the width of that scale (2 for the model's [-1, 1]). "masked" measures count only pixels
where the mask is 1 (the generated region).

FID needs Inception-v3 weights; `fid()` uses torchmetrics' implementation only when
torchmetrics (with torch-fidelity) is installed *and* the weight file is already in the
local torch hub cache, and otherwise returns `FIDResult(available=False, reason=...)` —
never a number from another network under the FID name.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: torch-fidelity's Inception weights, as torchmetrics' FID loads them.
FID_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _as_nchw(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    while t.ndim < 4:
        t = t.unsqueeze(0)
    return t


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004: Gaussian 11×11, σ 1.5, K1 0.01, K2 0.03), reflect-padded."""
    x, y = _as_nchw(x), _as_nchw(y)
    window = _gaussian_window().to(x.device)
    pad = window.shape[-1] // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), window.expand(t.shape[1], 1, -1, -1), groups=t.shape[1])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> float:
    if mask is None:
        return float(values.mean())
    weight = _as_nchw(mask).to(values).expand_as(values)
    total = float(weight.sum())
    return float((values * weight).sum() / total) if total > 0 else float("nan")


def psnr_from_mse(mse: float, data_range: float) -> float:
    return float("inf") if mse <= 0 else 10.0 * math.log10(data_range**2 / mse)


def quality(fake, real, mask=None, *, data_range: float = 2.0) -> dict[str, float]:
    """MAE, MSE, PSNR, SSIM on the full patch, and `masked_*` on the mask when one is given."""
    fake, real = _as_nchw(fake), _as_nchw(real)
    diff = fake - real
    ssim = ssim_map(fake, real, data_range)
    out = {
        "mae": _masked_mean(diff.abs(), None),
        "mse": _masked_mean(diff**2, None),
        "ssim": _masked_mean(ssim, None),
    }
    out["psnr"] = psnr_from_mse(out["mse"], data_range)
    if mask is not None:
        out["masked_l1"] = _masked_mean(diff.abs(), mask)
        out["masked_mse"] = _masked_mean(diff**2, mask)
        out["masked_ssim"] = _masked_mean(ssim, mask)
        out["masked_psnr"] = psnr_from_mse(out["masked_mse"], data_range)
    return out


def laplacian_variance(image) -> float:
    """Blurriness (SPEC §2.7, P2 §3.2): variance of the 4-neighbour Laplacian; lower = blurrier."""
    x = _as_nchw(image)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    lap = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), kernel)
    return float(lap.var(dim=(-2, -1), unbiased=False).mean())


def fft_mean_magnitude(image) -> float:
    """Blurriness (SPEC §2.7): mean magnitude of the 2-D FFT of the mean-removed image."""
    x = _as_nchw(image)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    return float(torch.fft.fft2(x).abs().mean())


@dataclass(frozen=True)
class FIDResult:
    available: bool
    value: float | None
    reason: str = ""


def fid(real: torch.Tensor, fake: torch.Tensor) -> FIDResult:
    """FID (Inception-v3 pool features, Fréchet distance) or why it cannot be computed here.

    `real`, `fake`: `(N, 1|3, H, W)` in [-1, 1]. Never downloads weights.
    """
    if importlib.util.find_spec("torchmetrics") is None or importlib.util.find_spec("torch_fidelity") is None:
        return FIDResult(False, None, "FID unavailable: torchmetrics and torch-fidelity are not installed")
    weights = Path(torch.hub.get_dir()) / "checkpoints" / FID_INCEPTION_FILE
    if not weights.is_file():
        return FIDResult(False, None, f"FID unavailable: Inception weights not in the local torch hub cache ({weights})")
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, normalize=True)

    def prep(t: torch.Tensor) -> torch.Tensor:
        t = ((_as_nchw(t) + 1.0) / 2.0).clamp(0, 1)
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t

    metric.update(prep(real), real=True)
    metric.update(prep(fake), real=False)
    return FIDResult(True, float(metric.compute()), "")
