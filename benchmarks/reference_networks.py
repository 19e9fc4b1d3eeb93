"""Reference networks for the benchmarks: what lesion-studio's generators are measured against.

Benchmarks only (not part of the package). Written from the papers' descriptions, not from
their code, so that `benchmarks/infer.py` and `benchmarks/train_step.py` can build a published
network of the same task in the same process and report ratios.

- `DeepFillV2`: Yu et al., "Free-Form Image Inpainting with Gated Convolution" (ICCV 2019),
  the coarse-to-fine network of Yu et al., "Generative Image Inpainting with Contextual
  Attention" (CVPR 2018, §3.1-3.2) with every conv a gated conv. `cnum = 48` counts a gated
  conv's output *before* the feature/gate split, so the kept widths are 24 / 48 / 96 at full,
  1/2 and 1/4 resolution. ELU features, sigmoid gates, no normalisation. Stage 1: encoder,
  four dilated convs (2, 4, 8, 16), decoder. Stage 2: a dilated-conv branch and a
  contextual-attention branch on the composited coarse result, concatenated, then a decoder.
  Stage 1 input `[image with hole, ones, mask]` (RGB: 5 channels); stage 2 input the image
  with the coarse result pasted into the hole.
  FlopCounterMode at 256², batch 1: 54.5 GFLOP for RGB (in 5, out 3), 53.7 GFLOP for one
  channel (in 3, out 1); contextual attention (3×3 patch matching on the 32² map and the 4×4
  transposed-conv paste-back) is 5.0 GFLOP of that. Parameters: 4.05 M (RGB).
- `UNet256`: Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks"
  (CVPR 2017, §3.2.1 and appendix 6.1.1): pix2pix's U-Net generator `unet_256`, ngf = 64, eight
  4×4 stride-2 downsamplings (C64-C128-C256-C512-C512-C512-C512-C512), BatchNorm everywhere but
  the first and the innermost down conv, LeakyReLU 0.2 down, ReLU up, dropout 0.5 in the first
  three decoder blocks, skips between mirrored levels, tanh out. FlopCounterMode at 256²,
  1 → 1 channel, batch 1: 36.3 GFLOP; 54.4 M parameters.

FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matrix products only:
normalisation, activations, gating products, softmax and upsampling are not counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# -- DeepFill v2 ----------------------------------------------------------------------------------
class _GConv(nn.Module):
    """DeepFill v2 gated conv: `conv_out` channels, split into features (ELU) × σ(gate).

    `conv_out` is the conv's width before the split (DeepFill's `cnum` convention); the layer
    keeps `conv_out // 2` channels. `gated=False`: a plain conv with `conv_out` outputs.
    """

    def __init__(self, in_ch: int, conv_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 *, gated: bool = True, relu: bool = False) -> None:
        super().__init__()
        self.gated = gated
        self.act = torch.relu if relu else F.elu  # ELU everywhere but before contextual attention
        pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(in_ch, conv_out, kernel, stride=stride, padding=pad, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not self.gated:
            return x
        feature, gate = x.chunk(2, dim=1)
        return self.act(feature) * torch.sigmoid(gate)


def _up(in_ch: int, conv_out: int) -> nn.Sequential:
    """DeepFill's `gen_deconv`: nearest ×2, then a gated conv."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _GConv(in_ch, conv_out))


class ContextualAttention(nn.Module):
    """Contextual attention (Yu et al. 2018 §3.2): fill the hole's features from known patches.

    On features downsampled by `rate`: 3×3 background patches, L2-normalised, are the kernels
    of a conv over the foreground (cosine similarity); patches touching the hole are excluded;
    scores are propagated along both image axes with a 3×3 identity kernel ("attention
    propagation"), softmax over patches (scale 10); the hole is rebuilt by pasting the
    matching `2·rate`² full-resolution patches with a transposed conv (stride `rate`).
    """

    def __init__(self, patch: int = 3, rate: int = 2, fuse: int = 3, softmax_scale: float = 10.0) -> None:
        super().__init__()
        self.patch, self.rate, self.fuse, self.scale = patch, rate, fuse, softmax_scale

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features `(N, C, H, W)`, mask `(N, 1, H, W)` (1 in the hole) → `(N, C, H, W)`."""
        r, k = self.rate, self.patch
        n, c, h, w = features.shape
        raw = F.unfold(features, 2 * r, stride=r, padding=r // 2)  # (N, C·(2r)², L): full-res paste patches
        small = F.interpolate(features, scale_factor=1 / r, mode="nearest")
        m_small = F.interpolate(mask, size=small.shape[-2:], mode="nearest")
        hs, ws = small.shape[-2:]
        patches = F.unfold(small, k, padding=k // 2)  # (N, C·k², L), L = hs·ws
        valid = (F.unfold(m_small, k, padding=k // 2).mean(dim=1) == 0).float()  # (N, L): patch outside the hole
        eye = torch.eye(self.fuse, device=features.device, dtype=features.dtype).view(1, 1, self.fuse, self.fuse)
        out = []
        for i in range(n):
            kernels = patches[i].t().reshape(-1, c, k, k)
            kernels = kernels / kernels.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
            score = F.conv2d(small[i : i + 1], kernels, padding=k // 2)  # (1, L, hs, ws)
            # attention propagation: the (foreground × background) score matrix convolved with a
            # 3×3 identity kernel along rows, then (axes swapped) along columns
            s = score.reshape(hs * ws, hs * ws).t().reshape(1, 1, hs * ws, hs * ws)
            s = F.conv2d(s, eye, padding=self.fuse // 2)
            s = s.reshape(1, hs, ws, hs, ws).permute(0, 2, 1, 4, 3).reshape(1, 1, hs * ws, hs * ws)
            s = F.conv2d(s, eye, padding=self.fuse // 2)
            s = s.reshape(1, ws, hs, ws, hs).permute(0, 2, 1, 4, 3).reshape(hs * ws, hs * ws)
            s = s.t().reshape(1, hs * ws, hs, ws)  # back to (1, L, hs, ws)
            v = valid[i].view(1, -1, 1, 1)
            attention = torch.softmax(s * v * self.scale, dim=1) * v
            paste = raw[i].t().reshape(-1, c, 2 * r, 2 * r)
            out.append(F.conv_transpose2d(attention, paste, stride=r, padding=r // 2) / 4.0)
        return torch.cat(out)[..., :h, :w]


class DeepFillV2(nn.Module):
    """DeepFill v2 generator: `forward(image, mask)` → `(coarse, refined)`, image in [-1, 1].

    `channels`: image channels (3 for the paper's RGB, 1 for lesion-studio's grayscale).
    H and W multiples of 8.
    """

    def __init__(self, channels: int = 3, cnum: int = 48) -> None:
        super().__init__()
        c = cnum
        self.channels = channels
        self.coarse = nn.Sequential(
            _GConv(channels + 2, c, 5),
            _GConv(c // 2, 2 * c, 3, 2),
            _GConv(c, 2 * c),
            _GConv(c, 4 * c, 3, 2),
            _GConv(2 * c, 4 * c),
            _GConv(2 * c, 4 * c),
            *[_GConv(2 * c, 4 * c, 3, dilation=d) for d in (2, 4, 8, 16)],
            _GConv(2 * c, 4 * c),
            _GConv(2 * c, 4 * c),
            _up(2 * c, 2 * c),
            _GConv(c, 2 * c),
            _up(c, c),
            _GConv(c // 2, c // 2),
            _GConv(c // 4, channels, gated=False),
        )
        self.hallucinate = nn.Sequential(  # stage 2, dilated-conv branch
            _GConv(channels, c, 5),
            _GConv(c // 2, c, 3, 2),
            _GConv(c // 2, 2 * c),
            _GConv(c, 2 * c, 3, 2),
            _GConv(c, 4 * c),
            _GConv(2 * c, 4 * c),
            *[_GConv(2 * c, 4 * c, 3, dilation=d) for d in (2, 4, 8, 16)],
        )
        self.attention_in = nn.Sequential(  # stage 2, contextual-attention branch (before CA)
            _GConv(channels, c, 5),
            _GConv(c // 2, c, 3, 2),
            _GConv(c // 2, 2 * c),
            _GConv(c, 4 * c, 3, 2),
            _GConv(2 * c, 4 * c),
        )
        self.attention_pre = _GConv(2 * c, 4 * c, relu=True)
        self.attention = ContextualAttention()
        self.attention_out = nn.Sequential(_GConv(2 * c, 4 * c), _GConv(2 * c, 4 * c))
        self.merge = nn.Sequential(
            _GConv(4 * c, 4 * c),
            _GConv(2 * c, 4 * c),
            _up(2 * c, 2 * c),
            _GConv(c, 2 * c),
            _up(c, c),
            _GConv(c // 2, c // 2),
            _GConv(c // 4, channels, gated=False),
        )

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones_like(mask)
        holed = image * (1.0 - mask)
        coarse = torch.tanh(self.coarse(torch.cat([holed, ones, ones * mask], dim=1)))
        composed = coarse * mask + image * (1.0 - mask)  # stage 2 sees the composited image only
        hallucinated = self.hallucinate(composed)
        a = self.attention_pre(self.attention_in(composed))
        a = self.attention(a, F.interpolate(mask, size=a.shape[-2:], mode="nearest"))
        a = self.attention_out(a)
        refined = torch.tanh(self.merge(torch.cat([hallucinated, a], dim=1)))
        return coarse, refined


# -- pix2pix unet_256 -----------------------------------------------------------------------------
class UNet256(nn.Module):
    """pix2pix `unet_256`: `(N, in_ch, 256, 256)` → `(N, out_ch, 256, 256)` in [-1, 1]."""

    def __init__(self, in_ch: int = 1, out_ch: int = 1, ngf: int = 64, num_downs: int = 8,
                 dropout: float = 0.5) -> None:
        super().__init__()
        widths = [min(ngf * 2**i, ngf * 8) for i in range(num_downs)]  # 64, 128, 256, 512, 512, ...
        self.down = nn.ModuleList()
        prev = in_ch
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(prev, w, 4, stride=2, padding=1, bias=False))
            if 0 < i < num_downs - 1:
                layers.append(nn.BatchNorm2d(w))
            self.down.append(nn.Sequential(*layers))
            prev = w
        self.up = nn.ModuleList()
        for i in reversed(range(num_downs)):  # decoder level i mirrors encoder level i
            inner = widths[i] if i == num_downs - 1 else 2 * widths[i]
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(inner, out_ch, 4, stride=2, padding=1),
                                             nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(inner, widths[i - 1], 4, stride=2, padding=1, bias=False),
                      nn.BatchNorm2d(widths[i - 1])]
            if dropout and num_downs - 1 - i in (1, 2, 3):  # pix2pix: the 3 decoder blocks after the innermost
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the first up block directly
        for up in self.up:
            x = up(x)
            if skips:
                x = torch.cat([skips.pop(), x], dim=1)
        return x


def count_gflop(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Forward GFLOP of `module(*inputs)` as torch's FlopCounterMode counts them (see the module doc)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 1e9
