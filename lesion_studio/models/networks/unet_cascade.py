"""P0 §III-B cascaded dilated U-Net inpainter with global and local discriminators.

Each U-Net: encoder blocks of two 3×3 convs (LeakyReLU + BN) then a 3×3 stride-2 conv;
dilated 3×3 convs with rates 2, 4, 8, 16 at the lowest resolution; transposed convs up,
concatenated with the encoder features of the same level; a 1×1 conv + tanh out.
The second U-Net refines the first: it sees the first output composited into the known
pixels, plus the mask.

Discriminators end in a 1×1 conv whose sigmoid is P0's patch map. They return the logits:
the sigmoid is folded into the BCE-with-logits loss (the same function, numerically stable
and safe under autocast); `torch.sigmoid(D(x))` is P0's map.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation),
        nn.LeakyReLU(0.2, inplace=True),
        nn.BatchNorm2d(out_ch),
    )


class DilatedUNet(nn.Module):
    """One U-Net of the cascade: `(N, in_ch, H, W)` → `(N, out_ch, H, W)` in [-1, 1].

    H and W must be multiples of `2**depth`.
    """

    def __init__(
        self, in_ch: int = 2, out_ch: int = 1, base_channels: int = 64, depth: int = 3,
        dilations: tuple[int, ...] = (2, 4, 8, 16),
    ) -> None:
        super().__init__()
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        prev = in_ch
        for ch in chans[:-1]:
            self.down.append(nn.Sequential(_conv_block(prev, ch), _conv_block(ch, ch)))
            self.pool.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # P0: 3×3 stride-2 conv
            prev = ch
        bottom = chans[-1]
        self.middle = nn.Sequential(
            _conv_block(prev, bottom),
            *[_conv_block(bottom, bottom, dilation=d) for d in dilations],  # P0: η = 2, 4, 8, 16
        )
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        prev = bottom
        for ch in reversed(chans[:-1]):
            self.up.append(nn.ConvTranspose2d(prev, ch, 4, stride=2, padding=1))
            self.merge.append(nn.Sequential(_conv_block(2 * ch, ch), _conv_block(ch, ch)))
            prev = ch
        self.out = nn.Conv2d(prev, out_ch, 1)  # P0: 1×1 conv + tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block, pool in zip(self.down, self.pool):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.middle(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return torch.tanh(self.out(x))


class CascadedUNet(nn.Module):
    """Two dilated U-Nets in series. `forward(image, mask)` → `(coarse, refined)`.

    image `(N, C, H, W)` in [-1, 1]; mask `(N, 1, H, W)`, 1 in the hole.
    """

    def __init__(
        self, in_channels: int = 2, out_channels: int = 1, base_channels: int = 64, depth: int = 3,
        dilations: tuple[int, ...] = (2, 4, 8, 16), fill_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.fill_value = fill_value
        self.first = DilatedUNet(in_channels, out_channels, base_channels, depth, tuple(dilations))
        self.second = DilatedUNet(out_channels + 1, out_channels, base_channels, depth, tuple(dilations))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        holed = image * (1.0 - mask) + self.fill_value * mask
        coarse = self.first(torch.cat([holed, mask], dim=1))
        composed = coarse * mask + image * (1.0 - mask)
        refined = self.second(torch.cat([composed, mask], dim=1))
        return coarse, refined


class PatchDiscriminator(nn.Module):
    """`blocks` stride-2 conv blocks (conv + LeakyReLU + BN) then a 1×1 conv: patch logits.

    P0's global discriminator is `blocks=4` on the 128² image (an 8×8 map); the local one is
    `blocks=3` on the 48² crop around the hole (a 6×6 map).
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 64, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i in range(blocks):
            ch = base_channels * min(2**i, 8)
            layers += [
                nn.Conv2d(prev, ch, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.BatchNorm2d(ch),
            ]
            prev = ch
        layers.append(nn.Conv2d(prev, 1, 1))  # P0: 1×1 conv (+ sigmoid, folded into the loss)
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class GlobalLocalDiscriminator(nn.Module):
    """P0's pair: `global_d` on the whole image, `local_d` on the crop around the hole."""

    def __init__(self, in_channels: int = 1, base_channels: int = 64, global_blocks: int = 4, local_blocks: int = 3) -> None:
        super().__init__()
        self.global_d = PatchDiscriminator(in_channels, base_channels, global_blocks)
        self.local_d = PatchDiscriminator(in_channels, base_channels, local_blocks)

    def forward(self, image: torch.Tensor, local_crop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.global_d(image), self.local_d(local_crop)
