"""P2 §3.1 LcGAN: pix2pix U-Net generator (mask → image) and the 70×70 PatchGAN.

Generator: `num_downs` 4×4 stride-2 convs down (LeakyReLU 0.2, BN after the first), the same
number of 4×4 stride-2 transposed convs up (ReLU, BN), skip connections between mirrored
levels, dropout 0.5 in the three innermost decoder blocks, tanh out (pix2pix `unet_256`).
Discriminator: `C64-C128-C256-C512` then a 1-channel conv, 4×4 kernels; on 256² it gives a
30×30 logit map, each cell seeing a 70×70 patch; it sees `[mask, image]`.
The condition is the mask in [-1, 1], or with several lesion classes one such channel per
class (`class_condition`: P2 conditions on hemorrhage label images of five types).
"""

from __future__ import annotations

import torch
from torch import nn


def class_condition(labels: torch.Tensor, classes: int = 0) -> torch.Tensor:
    """The generator's condition from `labels` `(N, 1, H, W)`: `classes` 0 → the binary mask
    (any value > 0.5) as one channel; K >= 2 → K one-hot channels for the values 1..K
    (background: every channel off). In the model's [-1, 1] range."""
    if not classes:
        return (labels > 0.5).to(labels.dtype) * 2.0 - 1.0
    values = labels.round().long().clamp(0, classes)[:, 0]
    onehot = torch.nn.functional.one_hot(values, classes + 1)[..., 1:]  # drop the background
    return onehot.permute(0, 3, 1, 2).to(labels.dtype) * 2.0 - 1.0


class _UNetLevel(nn.Module):
    """One level of the recursive pix2pix U-Net (down → inner → up, skip concatenated)."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, *, in_ch: int | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        in_ch = outer if in_ch is None else in_ch
        self.outermost = outermost
        down = [nn.Conv2d(in_ch, inner, 4, stride=2, padding=1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1), nn.Tanh()]
            layers = down + ([sub] if sub is not None else []) + up
        elif innermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + up
        else:
            down = [nn.LeakyReLU(0.2, True)] + down + [nn.BatchNorm2d(inner)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(outer)]
            if dropout > 0:
                up.append(nn.Dropout(dropout))
            layers = down + [sub] + up
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UNetGenerator(nn.Module):
    """pix2pix U-Net: `(N, in_channels, H, W)` → `(N, out_channels, H, W)` in [-1, 1].

    H and W must be multiples of `2**num_downs` (256 for the default 8).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 64,
                 num_downs: int = 8, dropout: float = 0.5) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        ngf = base_channels
        block = _UNetLevel(ngf * 8, ngf * 8, None, innermost=True)
        for _ in range(num_downs - 5):
            block = _UNetLevel(ngf * 8, ngf * 8, block, dropout=dropout)
        block = _UNetLevel(ngf * 4, ngf * 8, block)
        block = _UNetLevel(ngf * 2, ngf * 4, block)
        block = _UNetLevel(ngf, ngf * 2, block)
        self.model = _UNetLevel(out_channels, ngf, block, in_ch=in_channels, outermost=True)
        _pix2pix_init(self)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.model(mask)


class NLayerDiscriminator(nn.Module):
    """pix2pix PatchGAN on `[condition, image]`; `n_layers=3` is the 70×70 one (logits)."""

    def __init__(self, in_channels: int = 2, base_channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        ndf = base_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
                   nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        _pix2pix_init(self)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


def _pix2pix_init(module: nn.Module) -> None:
    """pix2pix `init_weights('normal', 0.02)`."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
