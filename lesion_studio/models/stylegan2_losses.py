"""StyleGAN2 training terms: non-saturating logistic loss, lazy R1, path length, G EMA, mixing.

All from StyleGAN2 (Karras et al., CVPR 2020) unless stated; P4 trains its three GANs with
the StyleGAN2 objective (P4 Eq. 1-3) and is silent on the regularisers, so their settings
are StyleGAN2's (`models/config.py`, `StyleGAN2Config`).

- Loss: the non-saturating logistic loss of the original GAN paper, as StyleGAN2 uses it:
  D minimises `softplus(D(fake)) + softplus(−D(real))`, G minimises `softplus(−D(G(z)))`
  (`AdversarialLoss("nonsaturating")`).
- R1 (Mescheder et al. 2018): `γ/2 · E‖∇_x D(x)‖²` on real images; *lazy* (StyleGAN2 App. B):
  computed once every `r1_every` D steps and multiplied by `r1_every` so its strength stays
  the same, with Adam's rate and betas scaled by `c = k / (k + 1)` (`lazy_adam_settings`).
- Path length (StyleGAN2 §3.2, Eq. 4): `(‖J_wᵀ y‖₂ − a)²`, y ~ N(0, I)/√(HW), a the running
  mean of the lengths (decay 0.01); lazy every `pl_every` G steps.
- EMA of G's weights (ProGAN §/StyleGAN2): half-life `ema_kimg`·1000 images; buffers copied.
- Style mixing (StyleGAN §3.1): with probability p, the styles from a random crossover layer
  on come from a second latent.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """`E‖∇_x D(x)‖²` over the batch (x: the real inputs D judged, with `requires_grad`).

    Differentiable (`create_graph=True`): its gradient trains D.
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_inputs, create_graph=True)
    return grad.float().square().sum(dim=tuple(range(1, grad.ndim))).mean()


class PathLengthPenalty(nn.Module):
    """StyleGAN2 §3.2 path-length regulariser; keeps the running mean `pl_mean` as a buffer
    (it is training state: saved in the checkpoint so a resumed run continues exactly).

    Args:
        decay: weight of the newest batch in the running mean (StyleGAN2: 0.01).
    """

    def __init__(self, decay: float = 0.01) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("pl_mean", torch.zeros(()))

    def forward(self, images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Mean `(‖J_wᵀ y‖ − a)²` for generated `images` `(N, C, H, W)` and their styles `ws`."""
        h, w = images.shape[-2:]
        noise = torch.randn_like(images) / math.sqrt(h * w)
        (grad,) = torch.autograd.grad((images.float() * noise.float()).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(dim=2).mean(dim=1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean().detach(), self.decay))
        return (lengths - self.pl_mean).square().mean()


def lazy_adam_settings(lr: float, betas: tuple[float, float], every: int) -> tuple[float, tuple[float, float]]:
    """Adam rate and betas for a network regularised every `every` steps (StyleGAN2 App. B).

    `c = every / (every + 1)`; `lr·c`, `betas**c`. `every` 0 (no regulariser): unchanged.
    """
    if every <= 0:
        return lr, betas
    c = every / (every + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


def ema_beta(batch_images: int, images_seen: int, ema_kimg: float, ema_rampup: float = 0.0) -> float:
    """Per-step EMA decay for a half-life of `ema_kimg`·1000 images (StyleGAN2).

    `ema_rampup` > 0 caps the half-life at `ema_rampup · images_seen` (StyleGAN2-ADA), so
    short runs (tests, CPU demos) still get an average that follows the generator.
    """
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup > 0:
        ema_nimg = min(ema_nimg, images_seen * ema_rampup)
    return 0.5 ** (batch_images / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, beta: float) -> None:
    """`ema ← beta·ema + (1 − beta)·source` for parameters; buffers (w_avg, noise maps) copied."""
    for p_ema, p in zip(ema.parameters(), source.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), source.buffers()):
        b_ema.copy_(b)


def draw_crossover(num_ws: int, prob: float) -> int | None:
    """The style-mixing crossover layer of one batch (torch's global RNG, so runs resume
    exactly): uniform in [1, num_ws) with probability `prob`, else None (no mixing)."""
    if prob <= 0 or num_ws < 2:
        return None
    if float(torch.rand(())) >= prob:
        return None
    return int(torch.randint(1, num_ws, ()))



def soft_mask(masks: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Binary `(N, 1, H, W)` masks in {0, 1} → `tanh(signed distance / sigma_px)` in model
    range (−1, 1) (ours); `sigma_px` 0 gives the sharp ±1 masks.

    The signed distance is + inside, − outside, ±½ px on the pixels either side of the outline,
    so `soft > 0` reads back exactly the mask (a 1-pixel nodule included; a Gaussian blur would
    erase small ones). Why: a real mask is −1 everywhere but one small blob (2 % of a 64² CT
    slice), and with sharp masks M-SG collapsed to empty masks — D scored real blobs +5.5 and
    empty masks −2.9, yet against that fixed D, 120 G steps raised no pixel above −0.65: a
    sharp blob gives no gradient that leads from "nothing" to "a blob"; a ramp does.
    """
    if sigma_px <= 0:
        return masks * 2.0 - 1.0
    from scipy.ndimage import distance_transform_edt

    binary = (masks > 0.5).cpu().numpy()
    signed = np.empty(binary.shape, np.float32)
    for index in np.ndindex(*binary.shape[:2]):
        inside = binary[index]
        if not inside.any():
            signed[index] = -np.inf  # no lesion: −1 everywhere
            continue
        signed[index] = np.where(inside, distance_transform_edt(inside) - 0.5, 0.5 - distance_transform_edt(~inside))
    return torch.tanh(torch.from_numpy(signed) / sigma_px).to(device=masks.device, dtype=masks.dtype)
