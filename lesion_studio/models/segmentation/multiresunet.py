"""MultiResUNet (Ibtehaz & Rahman 2020), the segmenter of P0 §IV-B (SPEC §3.1).

MultiRes block: three cascaded 3×3 convolutions (widths W/6, W/3, W/2 of W = α·U, α = 1.67)
concatenated and added to a 1×1 residual; ResPath: a chain of 3×3 conv + 1×1 residual units
on each skip connection, with fewer units at deeper levels (4, 3, 2, 1)."""

from __future__ import annotations

import torch
from torch import nn

from lesion_studio.models.segmentation.unet import norm_layer

#: Ibtehaz & Rahman's width multiplier α.
ALPHA = 1.67


def conv_bn(c_in: int, c_out: int, k: int, act: bool = True, norm: str = "batch") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), norm_layer(norm, c_out)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MultiResBlock(nn.Module):
    """Three cascaded 3×3 convs (a 3×3, 5×5, 7×7 receptive field) + a 1×1 residual shortcut."""

    def __init__(self, c_in: int, units: int, alpha: float = ALPHA, norm: str = "batch") -> None:
        super().__init__()
        w = alpha * units
        c1, c2, c3 = max(int(w / 6), 1), max(int(w / 3), 1), max(int(w / 2), 1)
        self.out_channels = c1 + c2 + c3
        self.c1, self.c2, self.c3 = (conv_bn(c_in, c1, 3, norm=norm), conv_bn(c1, c2, 3, norm=norm),
                                     conv_bn(c2, c3, 3, norm=norm))
        self.shortcut = conv_bn(c_in, self.out_channels, 1, act=False, norm=norm)
        self.bn = norm_layer(norm, self.out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)
        b = self.c2(a)
        c = self.c3(b)
        return self.act(self.bn(torch.cat([a, b, c], dim=1) + self.shortcut(x)))


class ResPath(nn.Module):
    """`length` units of (3×3 conv + 1×1 residual conv) applied to a skip connection."""

    def __init__(self, channels: int, length: int, norm: str = "batch") -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv_bn(channels, channels, 3, act=False, norm=norm) for _ in range(length))
        self.shortcuts = nn.ModuleList(conv_bn(channels, channels, 1, act=False, norm=norm) for _ in range(length))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, short in zip(self.convs, self.shortcuts):
            x = self.act(conv(x) + short(x))
        return x


class MultiResUNet(nn.Module):
    """`(B, in_channels, H, W)` → `(B, out_channels, H, W)` logits; H, W divisible by 2**(depth-1).

    Args:
        base_channels: U of the first level (32 in the original), doubled per level.
        depth: resolution levels including the bottleneck (5 in the original).
        norm: 'batch' (the original) or 'instance'.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 32, depth: int = 5,
                 norm: str = "batch") -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.enc = nn.ModuleList()
        self.paths = nn.ModuleList()
        c = in_channels
        skips = []
        for level in range(depth):
            block = MultiResBlock(c, base_channels * 2**level, norm=norm)
            self.enc.append(block)
            c = block.out_channels
            if level < depth - 1:
                self.paths.append(ResPath(c, length=depth - 1 - level, norm=norm))
                skips.append(c)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for level in reversed(range(depth - 1)):
            skip_c = skips[level]
            self.up.append(nn.ConvTranspose2d(c, skip_c, 2, stride=2))
            block = MultiResBlock(2 * skip_c, base_channels * 2**level, norm=norm)
            self.dec.append(block)
            c = block.out_channels
        self.head = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else self.pool(x))
            if i < len(self.paths):
                skips.append(self.paths[i](x))
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)
