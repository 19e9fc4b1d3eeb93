"""Differentiable augmentation of what a GAN discriminator sees (DiffAugment, Zhao et al.
2020, "Differentiable Augmentation for Data-Efficient GAN Training", written from the paper).

On a few thousand images StyleGAN2's discriminator memorises the real set within a few
thousand steps and the generator stops learning (P4 §2 cites StyleGAN2-ADA for exactly this).
DiffAugment applies the same random, differentiable transforms to real and generated batches
every time D looks at them, so D cannot memorise and G still gets gradients through them.
Only the geometric policies are offered: CT values are Hounsfield units, and a colour or
brightness jitter would teach D that −400 HU lung is as real as −850 HU lung.

- `translation`: every sample shifted by up to ± 1/8 of its size (integer pixels), the
  uncovered border filled with −1 (air / background in model range);
- `cutout`: a random square of half the size set to 0 in every channel.

An image and its mask (C-SG's condition) are transformed together: pass them stacked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lesion_studio.models.config import DIFFAUGMENT_POLICIES as POLICIES  # the order they are applied in

TRANSLATION_RATIO = 0.125  # DiffAugment's default
CUTOUT_RATIO = 0.5  # DiffAugment's default


def translate(x: torch.Tensor, ratio: float = TRANSLATION_RATIO, fill: float = -1.0) -> torch.Tensor:
    """Each sample of `(N, C, H, W)` shifted by its own integer offset in [-ratio·size, ratio·size]."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy + sh  # index into the padded map
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx + sw
    padded = F.pad(x, (sw, sw, sh, sh), value=fill)
    flat = padded.flatten(2)  # (N, C, (H+2sh)(W+2sw))
    index = (rows * (w + 2 * sw) + cols).flatten(1)  # (N, H·W)
    out = flat.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1))
    return out.view_as(x)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Each sample of `(N, C, H, W)` with a random (ratio·H)×(ratio·W) square set to 0."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), device=x.device)
    top, left = cy - ch // 2, cx - cw // 2  # the square may hang over the border, as in DiffAugment
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policies: Sequence[str]) -> torch.Tensor:
    """`x` through every policy named (see `POLICIES`); unchanged for an empty list."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"diffaugment: unknown policy {unknown[0]!r}; expected any of {', '.join(POLICIES)}")
    for policy in POLICIES:
        if policy in policies:
            x = translate(x) if policy == "translation" else cutout(x)
    return x


def augment_pair(x: torch.Tensor, cond: torch.Tensor | None,
                 policies: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`x` and its condition (or None) through the same draw of `policies`."""
    if not policies:
        return x, cond
    if cond is None:
        return diff_augment(x, policies), None
    both = diff_augment(torch.cat([x, cond], dim=1), policies)
    return both[:, : x.shape[1]], both[:, x.shape[1]:]
