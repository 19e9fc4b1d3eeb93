"""P3 §III-A shape generator and its discriminator: a DCGAN that draws 128² lesion masks.

G: z ∈ R^z_dim ~ N(0, I) → linear projection to 4×4×C → five 4×4 transposed convs with
stride 2 (BN + ReLU between) → `(N, 1, 128, 128)` in [-1, 1] (tanh; > 0 is the mask).
D mirrors it: five 4×4 stride-2 convs (LeakyReLU 0.2, BN after the first) → one score per
image, no sigmoid (LSGAN, P3 Eq. 1-2).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _num_ups(out_px: int) -> int:
    n = int(round(math.log2(out_px / 4)))
    if 4 * 2**n != out_px or n < 1:
        raise ValueError(f"out_px must be 4·2^n, got {out_px}")
    return n


class ShapeGenerator(nn.Module):
    """DCGAN generator: `(N, z_dim)` noise → `(N, 1, out_px, out_px)` mask logits in [-1, 1].

    Args:
        z_dim: noise size (P3: 100).
        base_channels: channels of the 4×4 projection (P3: 512); halved at each upsampling.
        out_px: output side (P3: 128, i.e. five upsamplings from 4×4).
    """

    def __init__(self, z_dim: int = 100, base_channels: int = 512, out_px: int = 128) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.base_channels = base_channels
        n_up = _num_ups(out_px)
        self.project = nn.Sequential(
            nn.Linear(z_dim, 4 * 4 * base_channels, bias=False),
            nn.Unflatten(1, (base_channels, 4, 4)),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        ch = base_channels
        for i in range(n_up):
            last = i == n_up - 1
            out = 1 if last else max(ch // 2, 1)
            layers.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1, bias=last))
            if last:
                layers.append(nn.Tanh())
            else:
                layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        self.up = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z))


class ShapeDiscriminator(nn.Module):
    """Mirror of `ShapeGenerator`: `(N, 1, in_px, in_px)` → `(N, 1)` scores (no sigmoid)."""

    def __init__(self, base_channels: int = 512, in_px: int = 128) -> None:
        super().__init__()
        n_down = _num_ups(in_px)
        chans = [max(base_channels // 2 ** (n_down - 1 - i), 1) for i in range(n_down)]
        layers: list[nn.Module] = []
        prev = 1
        for i, ch in enumerate(chans):
            layers.append(nn.Conv2d(prev, ch, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = ch
        self.features = nn.Sequential(*layers)
        self.score = nn.Sequential(nn.Flatten(), nn.Linear(prev * 4 * 4, 1))
        _dcgan_init(self)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(mask))


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), BN weights N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
