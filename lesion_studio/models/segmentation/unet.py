"""U-Net (Ronneberger 2015) as P0's baseline segmenter: (conv-BN-ReLU)×2 per level, max-pool
down, transposed-conv up, skip concatenation; one logit map out."""

from __future__ import annotations

import torch
from torch import nn


NORMS = ("batch", "instance")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm (the papers' choice) or affine InstanceNorm (nnU-Net's; no running statistics,
    so a network trained for a few steps on a handful of images behaves the same in eval mode)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


def double_conv(c_in: int, c_out: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm_layer(norm, c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), norm_layer(norm, c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """`(B, in_channels, H, W)` → `(B, out_channels, H, W)` logits; H, W divisible by 2**(depth-1).

    Args:
        in_channels: image channels (1 for radiographs/CT).
        out_channels: logit maps (1: lesion vs. background).
        base_channels: width of the first level, doubled per level (P0 uses 32–64; tests 4–8).
        depth: number of resolution levels including the bottleneck.
        norm: 'batch' (default) or 'instance'.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 32, depth: int = 4,
                 norm: str = "batch") -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(double_conv(c, w, norm))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(double_conv(2 * w, w, norm))
            c = w
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)
