"""Segmentation losses (SPEC §3.1): focal Tversky (P0) and soft Dice (P4 Eq. 5)."""

from __future__ import annotations

import torch
from torch import nn

from lesion_studio.core.errors import ConfigError

#: P0 §IV-B focal Tversky parameters (α weights false negatives).
FTL_ALPHA, FTL_BETA, FTL_GAMMA = 0.7, 0.3, 2.0
#: P4 Eq. 5 smoothing.
DICE_EPS = 1e-5
#: Negative-image term (P0 silent; ours): weight, and how many of the most confident pixels of
#: a lesion-free image it averages (about one small lesion at 256²).
NEGATIVE_WEIGHT = 1.0
NEGATIVE_TOP_PX = 16


class FocalTverskyLoss(nn.Module):
    """FTL = (1 − TI)^(1/γ), TI = Σp₁g₁ / (Σp₁g₁ + α·Σp₀g₁ + β·Σp₁g₀) (P0, as P0 writes it),
    plus `negative_weight` × a false-positive term on lesion-free images.

    p₁ is the predicted lesion probability (sigmoid of the logits), p₀ = 1 − p₁, g the same
    for the ground truth. The sums run over every pixel of the batch (P0 sums over the batch),
    so one image with a tiny lesion does not weigh as much as one with a large lesion, and
    false positives on a lesion-free image in the batch enter β·Σp₁g₀. A batch without any
    lesion pixel has no Tversky index; its Tversky part is 0.

    Why the extra term: per image, TI of a lesion-free image is ε/(β·FP + ε), so its loss is
    1.000 whatever the prediction and its gradient ~1e-8: false positives taught nothing. The
    term is, for each lesion-free image, the mean probability of its `negative_top_px` most
    confident pixels (0 for a clean prediction, → 1 for a confident false lesion), averaged
    over the batch's images (lesion images count 0). Its gradient never vanishes on a false
    positive, and it is in [0, 1] like FTL. Takes logits `(B, 1, H, W)` and targets in {0, 1}.
    """

    def __init__(self, alpha: float = FTL_ALPHA, beta: float = FTL_BETA, gamma: float = FTL_GAMMA,
                 eps: float = 1e-6, *, negative_weight: float = NEGATIVE_WEIGHT,
                 negative_top_px: int = NEGATIVE_TOP_PX) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma, self.eps = alpha, beta, gamma, eps
        self.negative_weight, self.negative_top_px = negative_weight, negative_top_px

    def tversky(self, p1: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
        """The batch-summed focal Tversky term of probabilities and targets `(B, N)`."""
        if not bool((g1 > 0).any()):
            return p1.sum() * 0.0  # no lesion in the batch: nothing to find (the negative term acts)
        tp = (p1 * g1).sum()
        fn = ((1 - p1) * g1).sum()
        fp = (p1 * (1 - g1)).sum()
        ti = (tp + self.eps) / (tp + self.alpha * fn + self.beta * fp + self.eps)
        return (1 - ti).clamp_min(0) ** (1.0 / self.gamma)

    def negative(self, p1: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of each lesion-free image's top-k probability mean (0 for lesion images)."""
        k = max(1, min(self.negative_top_px, p1.shape[1]))
        empty = (g1.amax(1) <= 0).to(p1)
        return (p1.topk(k, dim=1).values.mean(1) * empty).sum() / p1.shape[0]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p1 = torch.sigmoid(logits).flatten(1)
        g1 = target.to(p1).flatten(1)
        loss = self.tversky(p1, g1)
        if self.negative_weight:
            loss = loss + self.negative_weight * self.negative(p1, g1)
        return loss


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
