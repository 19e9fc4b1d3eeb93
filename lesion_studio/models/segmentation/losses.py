"""Segmentation losses (SPEC §3.1): focal Tversky (P0) and soft Dice (P4 Eq. 5)."""

from __future__ import annotations

import torch
from torch import nn

from lesion_studio.core.errors import ConfigError

#: P0 §IV-B focal Tversky parameters (α weights false negatives).
FTL_ALPHA, FTL_BETA, FTL_GAMMA = 0.7, 0.3, 2.0
#: P4 Eq. 5 smoothing.
DICE_EPS = 1e-5


class FocalTverskyLoss(nn.Module):
    """FTL = (1 − TI)^(1/γ), TI = Σp₁g₁ / (Σp₁g₁ + α·Σp₀g₁ + β·Σp₁g₀) (P0, as P0 writes it).

    p₁ is the predicted lesion probability (sigmoid of the logits), p₀ = 1 − p₁, g the same
    for the ground truth; sums run over each image, the loss is the batch mean. `eps` keeps
    TI defined for empty masks. Takes logits `(B, 1, H, W)` and targets in {0, 1}.
    """

    def __init__(self, alpha: float = FTL_ALPHA, beta: float = FTL_BETA, gamma: float = FTL_GAMMA,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma, self.eps = alpha, beta, gamma, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p1 = torch.sigmoid(logits).flatten(1)
        g1 = target.to(p1).flatten(1)
        tp = (p1 * g1).sum(1)
        fn = ((1 - p1) * g1).sum(1)
        fp = (p1 * (1 - g1)).sum(1)
        ti = (tp + self.eps) / (tp + self.alpha * fn + self.beta * fp + self.eps)
        return ((1 - ti).clamp_min(0) ** (1.0 / self.gamma)).mean()


class SoftDiceLoss(nn.Module):
    """1 − (2Σpg + ε) / (Σp + Σg + ε) per image, batch mean (P4 Eq. 5, ε = 1e-5)."""

    def __init__(self, eps: float = DICE_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits).flatten(1)
        g = target.to(p).flatten(1)
        return (1 - (2 * (p * g).sum(1) + self.eps) / (p.sum(1) + g.sum(1) + self.eps)).mean()


class DiceBCELoss(nn.Module):
    """Soft Dice + binary cross-entropy: the pixel-heatmap detector's loss (stable on tiny data)."""

    def __init__(self) -> None:
        super().__init__()
        self.dice = SoftDiceLoss()
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.bce(logits, target.to(logits))


LOSSES = {"focal_tversky": FocalTverskyLoss, "soft_dice": SoftDiceLoss, "dice_bce": DiceBCELoss}


def build_loss(name: str) -> nn.Module:
    """A segmentation loss by name: 'focal_tversky', 'soft_dice' or 'dice_bce'."""
    if name not in LOSSES:
        raise ConfigError(f"unknown segmentation loss {name!r}; expected one of {tuple(LOSSES)}")
    return LOSSES[name]()
