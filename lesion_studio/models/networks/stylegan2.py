"""StyleGAN2 generator and discriminator (Karras et al., CVPR 2020), with P4's mask conditioning.

Written from the StyleGAN2 paper (no StyleGAN2 library is installed, and the well-kept ones
— NVIDIA's stylegan2-ada-pytorch, rosinality's stylegan2-pytorch — ship pickled networks and
custom CUDA ops and have no mask input; P4 §3.2 changes exactly the layers they fuse):

- equalized learning rate: weights drawn N(0, 1), scaled by He's constant at run time
  (ProGAN §4.1); the mapping network's rates are multiplied by `mapping_lr_mul` (StyleGAN §C);
- mapping network: z normalized to unit second moment → `mapping_layers` fully connected
  layers, leaky ReLU 0.2 → w; it tracks `w_avg`, the running mean of w, for truncation;
- modulated convolution (StyleGAN2 §2.2, Eq. 1-3): the style `s = A(w)` scales the input
  channels of the weights, demodulation divides each output channel by
  `sqrt(Σ (s·w)² + 1e-8)` so a unit-variance input gives a unit-variance output. Computed in
  the equivalent "non-fused" form (scale the input by s, one shared convolution, scale the
  output by the demodulation coefficients), which needs no grouped convolution;
- noise inputs: one N(0, 1) map per layer with a learned strength (init 0); `noise_mode`
  "random" (training), "const" (a fixed map stored with the weights: sampling is then a
  function of z alone) or "none";
- skip generator (StyleGAN2 Fig. 7): a learned 4×4 constant, two 3×3 modulated convs per
  resolution, a toRGB (1×1 modulated conv, no demodulation) per resolution whose outputs are
  upsampled and summed; the output is linear (no tanh), in the model's [-1, 1] range;
- residual discriminator (StyleGAN2 Fig. 7): fromRGB at the top resolution, then per
  resolution two 3×3 convs and a 1×1 skip, both downsampled, summed and scaled by 1/√2;
  minibatch standard deviation (group 4, one feature) before the last 3×3 conv and two dense
  layers → one logit per image.

Up- and downsampling are bilinear ×2 upsampling before the convolution and 2×2 average
pooling before it, not StyleGAN2's transposed/strided convolutions with a [1, 3, 3, 1] FIR
blur: simpler, and a small, stated departure (the paper's own ablations do not hinge on it).

Mask conditioning (P4 §3.2, Fig. 2), `cond_channels > 0` (C-SG): the label mask, resampled
(area averaging) to each layer's resolution, is appended to the output of every modulated,
demodulated convolution of G — after its noise, bias and activation, which act per channel,
so the mask channel reaches the next modulated convolution and the toRGB unchanged — and in
D it is concatenated with the image before fromRGB and with the features before every
residual block. B-SG (image + mask channels out) and M-SG (mask only) are the unconditional
network with `out_channels` 2 and 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Leaky ReLU slope and the gain that restores unit variance after it (StyleGAN2 `lrelu`).
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


def _log2_px(px: int) -> int:
    n = int(round(math.log2(px)))
    if 2**n != px or n < 3:
        raise ValueError(f"StyleGAN2 needs a power-of-two size >= 8 px, got {px}")
    return n


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: `min(channel_base / resolution, channel_max)` (StyleGAN2)."""
    return max(1, min(channel_base // resolution, channel_max))


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """z / sqrt(mean(z²)): the mapping network's input normalization (StyleGAN §2)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def resample_mask(cond: torch.Tensor, size: int) -> torch.Tensor:
    """A `(N, C, H, W)` condition at `size`² (area average down, bilinear up) — P4 §3.2."""
    if cond.shape[-1] == size and cond.shape[-2] == size:
        return cond
    if cond.shape[-1] > size:
        return F.interpolate(cond, size=(size, size), mode="area")
    return F.interpolate(cond, size=(size, size), mode="bilinear", align_corners=False)


class EqualLinear(nn.Module):
    """Dense layer with equalized learning rate (weights N(0, 1/lr_mul²), gain lr_mul/√in)."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return _lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate, 'same' padding; `down`: 2×2 average pool first."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, bias: bool = True,
                 activation: bool = False, down: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.activation, self.down, self.padding = activation, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return _lrelu(x) if self.activation else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution (§2.2, Eq. 1-3): `(N, in, H, W)`, `(N, w_dim)` → `(N, out, H', W')`.

    Args:
        in_channels, out_channels, kernel: the convolution.
        w_dim: size of the intermediate latent w.
        demodulate: divide each output channel by the norm of its modulated weights (Eq. 3);
            toRGB layers do not demodulate.
        up: bilinear ×2 upsampling of the input first (H' = 2H).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, *,
                 demodulate: bool = True, up: bool = False) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1 (StyleGAN2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.demodulate, self.up, self.padding = demodulate, up, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (N, in)
        weight = self.weight * self.weight_gain
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = x * styles[:, :, None, None].to(x.dtype)
        x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # Σ_{i,k}(s_i·w_oik)² = Σ_i s_i² · Σ_k w_oik²: the norm of each sample's modulated weights
            dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # (N, out)
            x = x * dcoefs[:, :, None, None].to(x.dtype)
        return x


class NoiseInput(nn.Module):
    """Per-pixel N(0, 1) noise with a learned strength (init 0), one map per layer (StyleGAN §2)."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const[None, None]
        else:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + noise.to(x.dtype) * self.strength.to(x.dtype)


class StyledConv(nn.Module):
    """A synthesis layer: modulated/demodulated conv → noise → bias → leaky ReLU (·√2)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise = NoiseInput(resolution)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = self.noise(self.conv(x, w), noise_mode)
        return _lrelu(x + self.bias[None, :, None, None].to(x.dtype))


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation, plus a bias: features → output channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None].to(x.dtype)


class MappingNetwork(nn.Module):
    """z → w: normalization then `num_layers` dense layers (StyleGAN §2); tracks `w_avg`.

    Args:
        z_dim, w_dim: latent sizes (StyleGAN2: 512 and 512).
        num_layers: dense layers (StyleGAN2: 8).
        lr_mul: learning-rate multiplier of the mapping layers (StyleGAN §C: 0.01).
        w_avg_beta: decay of the running mean of w used by truncation (StyleGAN2-ADA: 0.995).
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[
            EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul, activation=True) for i in range(num_layers)
        ])
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, *, psi: float = 1.0, track_w_avg: bool = False) -> torch.Tensor:
        w = self.layers(normalize_2nd_moment(z.float()))
        if track_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if psi != 1.0:  # truncation trick (StyleGAN §5.1): w' = w_avg + ψ (w - w_avg)
            w = self.w_avg.lerp(w, psi)
        return w


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 skip generator: `(N, z_dim)` [+ `(N, cond_channels, P, P)` mask] → `(N, out_channels, P, P)`.

    Args:
        z_dim, w_dim, mapping_layers, mapping_lr_mul: the mapping network.
        out_px: output side (a power of two >= 8; P4: 256).
        out_channels: generated channels (B-SG: image + mask = 2; M-SG: mask = 1; C-SG: image = 1).
        cond_channels: mask channels appended after every demodulated conv (C-SG: 1; else 0).
        channel_base, channel_max: feature maps `min(channel_base / res, channel_max)`.

    The latent layout follows the skip architecture: `num_ws = 2·log2(out_px) − 2` styles,
    `ws[:, 0]` for the 4×4 conv, `ws[:, 1]` for its toRGB, then per resolution two convs and
    a toRGB, each toRGB sharing its style with the next resolution's first conv.
    """

    def __init__(self, z_dim: int = 512, w_dim: int = 512, out_px: int = 256, out_channels: int = 1,
                 cond_channels: int = 0, *, mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                 channel_base: int = 32768, channel_max: int = 512) -> None:
        super().__init__()
        log2 = _log2_px(out_px)
        self.z_dim, self.w_dim, self.out_px = z_dim, w_dim, out_px
        self.out_channels, self.cond_channels = out_channels, cond_channels
        self.num_ws = 2 * log2 - 2
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)

        def ch(res: int) -> int:
            return channels_at(res, channel_base, channel_max)

        self.const = nn.Parameter(torch.randn(1, ch(4), 4, 4))
        self.conv4 = StyledConv(ch(4), ch(4), w_dim, 4)
        self.torgb4 = ToRGB(ch(4) + cond_channels, out_channels, w_dim)
        self.convs_up = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.torgbs = nn.ModuleList()
        for i in range(3, log2 + 1):
            res = 2**i
            self.convs_up.append(StyledConv(ch(res // 2) + cond_channels, ch(res), w_dim, res, up=True))
            self.convs.append(StyledConv(ch(res) + cond_channels, ch(res), w_dim, res))
            self.torgbs.append(ToRGB(ch(res) + cond_channels, out_channels, w_dim))

    def ws(self, z: torch.Tensor, *, psi: float = 1.0, track_w_avg: bool = False) -> torch.Tensor:
        """`(N, z_dim)` → `(N, num_ws, w_dim)`: one w broadcast to every layer (ψ: truncation)."""
        w = self.mapping(z, psi=psi, track_w_avg=track_w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def mixed_ws(self, z: torch.Tensor, z2: torch.Tensor, crossover: int, *, psi: float = 1.0,
                 track_w_avg: bool = False) -> torch.Tensor:
        """Style mixing (StyleGAN §3.1): layers `< crossover` take w(z), the others w(z2)."""
        if not 0 <= crossover <= self.num_ws:
            raise ValueError(f"crossover must be in [0, {self.num_ws}], got {crossover}")
        a = self.ws(z, psi=psi, track_w_avg=track_w_avg)
        b = self.ws(z2, psi=psi)
        return torch.cat([a[:, :crossover], b[:, crossover:]], dim=1)

    def _with_cond(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            return x
        return torch.cat([x, resample_mask(cond, x.shape[-1]).to(x.dtype)], dim=1)

    def synthesis(self, ws: torch.Tensor, cond: torch.Tensor | None = None, *,
                  noise_mode: str = "random") -> torch.Tensor:
        """`(N, num_ws, w_dim)` styles [+ condition] → `(N, out_channels, P, P)`."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError(f"this generator takes {self.cond_channels} condition channel(s); "
                             f"got {'none' if cond is None else cond.shape[1]}")
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"expected {self.num_ws} styles, got {ws.shape[1]}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self._with_cond(self.conv4(x, ws[:, 0], noise_mode), cond)
        image = self.torgb4(x, ws[:, 1])
        i = 1
        for conv_up, conv, torgb in zip(self.convs_up, self.convs, self.torgbs):
            x = self._with_cond(conv_up(x, ws[:, i], noise_mode), cond)
            x = self._with_cond(conv(x, ws[:, i + 1], noise_mode), cond)
            image = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False) + torgb(x, ws[:, i + 2])
            i += 2
        return image

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None, *, psi: float = 1.0,
                noise_mode: str = "random", z2: torch.Tensor | None = None, crossover: int | None = None,
                track_w_avg: bool = False, return_ws: bool = False):
        """Sample: `z` (and `z2` from layer `crossover` on: style mixing) → image [, ws].

        `return_ws`: also return the `(N, num_ws, w_dim)` styles (a leaf of the path-length
        regulariser's gradient), so the whole generator call goes through `forward` (DDP).
        """
        if z2 is not None and crossover is not None and crossover < self.num_ws:
            ws = self.mixed_ws(z, z2, crossover, psi=psi, track_w_avg=track_w_avg)
        else:
            ws = self.ws(z, psi=psi, track_w_avg=track_w_avg)
        image = self.synthesis(ws, cond, noise_mode=noise_mode)
        return (image, ws) if return_ws else image


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the std over groups of samples as extra feature maps (ProGAN §3, StyleGAN2 D).

    The group is the largest divisor of the batch not above `group_size`, so any batch works.
    """
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    f = num_channels
    y = x.float().reshape(g, -1, f, c // f, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (n/g, f)
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: 3×3 conv, 3×3 conv ↓2, plus a 1×1 ↓2 skip, summed ·1/√2 (StyleGAN2 Fig. 7c)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * (1.0 / math.sqrt(2.0))


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: `(N, in_channels, P, P)` [+ mask] → `(N, 1)` logits.

    Args:
        in_px: input side (a power of two >= 8).
        in_channels: channels judged (B-SG 2, M-SG 1, C-SG 1).
        cond_channels: mask channels concatenated before fromRGB and before every residual
            block (C-SG, P4 §3.2 Fig. 2b/d: 1; else 0).
        channel_base, channel_max: as the generator.
        mbstd_group, mbstd_channels: minibatch standard deviation (StyleGAN2: 4 and 1).
    """

    def __init__(self, in_px: int = 256, in_channels: int = 1, cond_channels: int = 0, *,
                 channel_base: int = 32768, channel_max: int = 512, mbstd_group: int = 4,
                 mbstd_channels: int = 1) -> None:
        super().__init__()
        log2 = _log2_px(in_px)
        self.in_px, self.in_channels, self.cond_channels = in_px, in_channels, cond_channels
        self.mbstd_group, self.mbstd_channels = mbstd_group, mbstd_channels

        def ch(res: int) -> int:
            return channels_at(res, channel_base, channel_max)

        self.from_rgb = EqualConv2d(in_channels + cond_channels, ch(in_px), 1, activation=True)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(ch(2**i) + cond_channels, ch(2 ** (i - 1))) for i in range(log2, 2, -1)
        )
        c4 = ch(4)
        if c4 % mbstd_channels:
            raise ValueError(f"mbstd_channels ({mbstd_channels}) must divide the 4×4 width ({c4})")
        self.conv = EqualConv2d(c4 + mbstd_channels, c4, 3, activation=True)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)

    def _with_cond(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            return x
        return torch.cat([x, resample_mask(cond, x.shape[-1]).to(x.dtype)], dim=1)

    def forward(self, image: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError(f"this discriminator takes {self.cond_channels} condition channel(s); "
                             f"got {'none' if cond is None else cond.shape[1]}")
        x = self.from_rgb(self._with_cond(image, cond))
        for block in self.blocks:
            x = block(self._with_cond(x, cond))
        x = minibatch_stddev(x, self.mbstd_group, self.mbstd_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))
