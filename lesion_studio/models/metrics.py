"""Quality measures of generated images (SPEC §2.7): pixel errors, SSIM, blurriness, FID, KID.

Images are `(N, 1, H, W)` tensors (or `(H, W)` arrays) on one value scale; `data_range` is
the width of that scale (2 for the model's [-1, 1]). "masked" measures count only pixels
where the mask is 1 (the generated region).

FID and KID need Inception-v3 weights; `fid()`/`kid()` use torchmetrics only when
torchmetrics (with torch-fidelity) is installed *and* the weight file is present — a local
file given as `weights`, or the file in the local torch hub cache (`weights="auto"`) — and
otherwise return `FIDResult(available=False, reason=...)`: never a download, never a number
from another network under the FID name (`inception_unavailable` says why).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import tempfile
import threading
from collections.abc import Iterator
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


def lesion_contrast(images, masks) -> float | None:
    """Mean over samples of (mean inside the mask − mean outside): how a generator's lesions
    stand out from their surround, compared with the same number on real patches. Samples
    whose mask is empty or full do not count; None when none counts."""
    x, m = _as_nchw(images), _as_nchw(masks).bool().expand_as(_as_nchw(images))
    inside = m.flatten(1).float()
    n_in = inside.sum(1)
    n_out = inside.shape[1] - n_in
    ok = (n_in > 0) & (n_out > 0)
    if not bool(ok.any()):
        return None
    flat = x.flatten(1)
    mean_in = (flat * inside).sum(1) / n_in.clamp_min(1)
    mean_out = (flat * (1 - inside)).sum(1) / n_out.clamp_min(1)
    return float((mean_in - mean_out)[ok].mean())


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


def inception_weights_file(weights: str | Path = "auto") -> Path:
    """The Inception weight file FID/KID would read: `weights` itself, or for "auto" the
    file torchmetrics looks for in the local torch hub cache."""
    if str(weights) == "auto":
        return Path(torch.hub.get_dir()) / "checkpoints" / FID_INCEPTION_FILE
    return Path(weights).expanduser()


def inception_unavailable(name: str = "FID", weights: str | Path = "auto") -> str:
    """Why `name` (FID or KID) cannot be computed here, or "" when it can (never downloads).

    `weights`: "auto" (the torch hub cache) or the path of a local copy of torch-fidelity's
    `weights-inception-2015-12-05-6726825d.pth`."""
    if importlib.util.find_spec("torchmetrics") is None or importlib.util.find_spec("torch_fidelity") is None:
        return f"{name} unavailable: torchmetrics and torch-fidelity are not installed"
    path = inception_weights_file(weights)
    if not path.is_file():
        where = "not in the local torch hub cache" if str(weights) == "auto" else "file not found"
        return f"{name} unavailable: Inception weights {where} ({path})"
    return ""


_HUB_GUARD = threading.Lock()


@contextlib.contextmanager
def _inception_hub(weights: str | Path) -> Iterator[None]:
    """Let torchmetrics find a local weight file: a temporary torch hub folder whose
    `checkpoints/` holds a link to it under the name torch-fidelity asks for ("auto": as is)."""
    if str(weights) == "auto":
        yield
        return
    with _HUB_GUARD, tempfile.TemporaryDirectory(prefix="lesion-studio-inception-") as tmp:
        link = Path(tmp) / "checkpoints" / FID_INCEPTION_FILE
        link.parent.mkdir()
        link.symlink_to(inception_weights_file(weights).resolve())
        previous = torch.hub.get_dir()
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def _inception_input(t: torch.Tensor) -> torch.Tensor:
    """[-1, 1] grayscale or RGB → [0, 1] RGB, as torchmetrics' `normalize=True` expects."""
    t = ((_as_nchw(t) + 1.0) / 2.0).clamp(0, 1)
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def fid(real: torch.Tensor, fake: torch.Tensor, *, weights: str | Path = "auto") -> FIDResult:
    """FID (Inception-v3 pool features, Fréchet distance) or why it cannot be computed here.

    `real`, `fake`: `(N, 1|3, H, W)` in [-1, 1]. `weights`: see `inception_unavailable`.
    Never downloads weights.
    """
    reason = inception_unavailable("FID", weights)
    if reason:
        return FIDResult(False, None, reason)
    from torchmetrics.image.fid import FrechetInceptionDistance

    with _inception_hub(weights):
        metric = FrechetInceptionDistance(feature=2048, normalize=True)
    metric.update(_inception_input(real), real=True)
    metric.update(_inception_input(fake), real=False)
    return FIDResult(True, float(metric.compute()), "")


def kid(real: torch.Tensor, fake: torch.Tensor, subset_size: int = 50, *,
        weights: str | Path = "auto") -> FIDResult:
    """KID (Bińkowski et al. 2018: unbiased MMD², cubic kernel, on the same Inception features
    as FID; mean over subsets) or why it cannot be computed here. Unlike FID it is unbiased
    for small sample counts, which suits small datasets (P4). Inputs as `fid`."""
    reason = inception_unavailable("KID", weights)
    if reason:
        return FIDResult(False, None, reason)
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(int(_as_nchw(real).shape[0]), int(_as_nchw(fake).shape[0]))
    if n < 2:
        return FIDResult(False, None, "KID unavailable: fewer than 2 samples")
    with _inception_hub(weights):
        metric = KernelInceptionDistance(feature=2048, subset_size=min(subset_size, n), normalize=True)
    metric.update(_inception_input(real), real=True)
    metric.update(_inception_input(fake), real=False)
    mean, _std = metric.compute()
    return FIDResult(True, float(mean), "")
