"""Losses of the generator families: L1, adversarial (LSGAN, non-saturating, BCE), VGG terms.

Adversarial losses take discriminator *logits* (or LSGAN scores) and come in two halves:
`discriminator(real, fake)` and `generator(fake)`.
- `lsgan`: least squares, real → 1, fake → 0 (P3 Eq. 1-2); G pushes fake → 1.
- `bce`: log-loss of `sigmoid(logits)` (P0 Eq. 3, P2 Eq. 1); G uses the usual `-log D(G)`.
- `nonsaturating`: softplus form (P1's MAT/StyleGAN loss): D `softplus(-r) + softplus(f)`,
  G `softplus(-f)`; the same function as `bce` written the StyleGAN way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.config import ADVERSARIAL_LOSSES
from lesion_studio.models.vgg import (
    VGG16_POOL_1_3,
    VGG19_BLOCK_FIRST_CONV,
    VGGFeatures,
    feature_l1,
    resolve_vgg_weights,
)


def l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error; with `mask` (broadcastable, 1 = counted) the mean over the mask."""
    diff = (fake.float() - real.float()).abs()
    if mask is None:
        return diff.mean()
    weight = mask.float().expand_as(diff)
    return (diff * weight).sum() / weight.sum().clamp_min(1.0)


class AdversarialLoss:
    """One of `lsgan`, `nonsaturating`, `bce`; see the module docstring."""

    def __init__(self, kind: str) -> None:
        if kind not in ADVERSARIAL_LOSSES:
            raise ConfigError(f"adversarial_loss: unknown loss {kind!r}; expected {ADVERSARIAL_LOSSES}")
        self.kind = kind

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real, fake = real.float(), fake.float()
        if self.kind == "lsgan":
            return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))
        if self.kind == "bce":
            return 0.5 * (
                F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            )
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def generator(self, fake: torch.Tensor) -> torch.Tensor:
        fake = fake.float()
        if self.kind == "lsgan":
            return 0.5 * F.mse_loss(fake, torch.ones_like(fake))
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        return F.softplus(-fake).mean()


class PerceptualLoss(nn.Module):
    """P3 §III-C: L1 of VGG16 pool1/pool2/pool3 features (pretrained weights required)."""

    def __init__(self, weights: str = "auto", *, key: str = "model.perceptual_weights") -> None:
        super().__init__()
        path = resolve_vgg_weights("vgg16", weights, key=key)
        if path is None:
            raise ConfigError(f"{key}: the perceptual term is disabled; do not build it")
        self.features = VGGFeatures("vgg16", VGG16_POOL_1_3, path)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return feature_l1(self.features, fake, real)


class ContentLoss(nn.Module):
    """P0 Eq. 6: size-normalised L1 of VGG19 features at the first conv of blocks 1-4."""

    def __init__(self, weights: str = "auto", *, key: str = "model.content_weights") -> None:
        super().__init__()
        path = resolve_vgg_weights("vgg19", weights, key=key)
        if path is None:
            raise ConfigError(f"{key}: the content term is disabled; do not build it")
        self.features = VGGFeatures("vgg19", VGG19_BLOCK_FIRST_CONV, path)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return feature_l1(self.features, fake, real)


def build_vgg_term(arch: str, setting: str, weight: float, *, key: str) -> nn.Module | None:
    """The perceptual (`vgg16`) or content (`vgg19`) loss, or None when disabled or weighted 0.

    Raises `ConfigError` (how to provide the weights, or how to disable) when the term is on
    and no pretrained weights are available locally.
    """
    if weight == 0 or setting.strip().lower() in ("disabled", "off", "none"):
        return None
    return PerceptualLoss(setting, key=key) if arch == "vgg16" else ContentLoss(setting, key=key)
