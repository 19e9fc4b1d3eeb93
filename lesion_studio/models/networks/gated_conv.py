"""P3 §III-C texture generator (gated convolutions, coarse → refinement) and SN-PatchGAN D_t.

Gated convolution: `F_out = IN(LeakyReLU(W_f·F) ⊙ σ(W_g·F))` (P3 Eq. 3). `gate="full"` gives
every output channel its own gate (P3, DeepFill v2); `gate="half"` one gate per pair of channels
(lesion-studio's choice, measured in docs/models.md: the gate branch is half as wide, a layer
costs 3/4); `gate="single"` one gate map shared by all channels (the single-channel light-weight
gated conv, LWGC_sc, of Yi et al. 2020, "Contextual Residual Aggregation for Ultra
High-Resolution Image Inpainting"): a layer costs about 1/2.
Each stage is encoder (two stride-2 downsamplings) → bottleneck with four dilated gated convs
(dilation 2, 4, 8, 16) → decoder with nearest-neighbour upsampling, then a plain conv + tanh.
Widths are `c, 2c, 4c` at full, 1/2 and 1/4 resolution (`c = base_channels`, kept channels after
the gate; DeepFill v2's `cnum = 48` counts the conv's output before the feature/gate split, so
its kept widths are 24/48/96); the dilated convs are `dilated_mult · c` wide (4 in P3 and
DeepFill; 2 narrows the bottleneck). Presets (`models/presets.py`) pick `c`, the gate and the
dilated width.
The coarse stage G_C sees `[I ⊙ (1 − M) + M, M]`; the refinement stage G_R sees
`[I_out,1, M]`, where `I_out,1` is composited with the known pixels outside the hole (as in
DeepFill v2, the gated-conv reference P3 builds on). D_t: six spectrally normalised convs,
five with stride 2 and a last one to one channel: a `(N, 1, H/32, W/32)` score map.

Trained with inverted masks (the lesion kept, its surroundings regenerated) the same
generator is lesion-studio's outpainter (P1 §3.2, SPEC §2.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from lesion_studio.models.presets import GATES



class GatedConv2d(nn.Module):
    """`IN(LeakyReLU(W_f·x) ⊙ σ(W_g·x))`; `norm`/`activation` False for plain gated output.

    `gate`: "full" (W_g has `out_ch` outputs), "half" (`ceil(out_ch / 2)` outputs, gate k
    scales channels 2k and 2k + 1) or "single" (one output, broadcast over channels). W_f and
    W_g stay one conv (`conv.weight`: features first, then the gate).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
        *, norm: bool = True, activation: bool = True, gate: str = "full",
    ) -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        pad = dilation * (kernel - 1) // 2
        self.out_ch = out_ch
        gate_ch = {"full": out_ch, "half": (out_ch + 1) // 2, "single": 1}[gate]
        self.conv = nn.Conv2d(in_ch, out_ch + gate_ch, kernel, stride=stride, padding=pad, dilation=dilation)
        self.activation = nn.LeakyReLU(0.2) if activation else nn.Identity()
        self.norm = nn.InstanceNorm2d(out_ch, affine=True) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # W_f·F and W_g·F in one conv
        feature, gate = self.activation(y[:, : self.out_ch]), torch.sigmoid(y[:, self.out_ch :])
        groups = gate.shape[1]
        if groups in (1, self.out_ch):  # single or full: plain broadcasting
            return self.norm(feature * gate)
        n, _, h, w = feature.shape
        if self.out_ch == 2 * groups:  # half, even width: each gate scales its pair of channels
            paired = feature.reshape(n, groups, 2, h, w) * gate.reshape(n, groups, 1, h, w)
            return self.norm(paired.reshape(n, -1, h, w))
        return self.norm(feature * gate.repeat_interleave(2, dim=1)[:, : self.out_ch])


class GatedStage(nn.Module):
    """One encoder–bottleneck–decoder of gated convs: `(N, in_ch, H, W)` → `(N, out_ch, H, W)`."""

    def __init__(self, in_ch: int, out_ch: int, base_channels: int = 48, dilations: tuple[int, ...] = (2, 4, 8, 16),
                 gate: str = "full", dilated_mult: int = 4) -> None:
        super().__init__()
        c = base_channels
        b = dilated_mult * c  # width of the dilated convs (4c: P3/DeepFill; 2c: the light preset)

        def gconv(i: int, o: int, k: int, **kw) -> GatedConv2d:
            return GatedConv2d(i, o, k, gate=gate, **kw)

        self.encoder = nn.Sequential(
            gconv(in_ch, c, 5),
            gconv(c, 2 * c, 3, stride=2),  # downsample 1
            gconv(2 * c, 2 * c, 3),
            gconv(2 * c, 4 * c, 3, stride=2),  # downsample 2
            gconv(4 * c, 4 * c, 3),
        )
        widths = [4 * c] + [b] * len(dilations)
        self.bottleneck = nn.Sequential(
            *[gconv(widths[i], widths[i + 1], 3, dilation=d) for i, d in enumerate(dilations)],  # P3: 2, 4, 8, 16
            gconv(widths[-1], 4 * c, 3),
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),  # P3: nearest-neighbour upsampling
            gconv(4 * c, 2 * c, 3),
            gconv(2 * c, 2 * c, 3),
            nn.Upsample(scale_factor=2, mode="nearest"),
            gconv(2 * c, c, 3),
            gconv(c, max(c // 2, 1), 3),
        )
        self.out = nn.Conv2d(max(c // 2, 1), out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.decoder(self.bottleneck(self.encoder(x)))))


class TextureGenerator(nn.Module):
    """Coarse-to-fine gated-conv inpainter.

    `forward(image, mask)`: image `(N, C, H, W)` in [-1, 1], mask `(N, 1, H, W)` with 1 where
    pixels are generated; H and W multiples of 4. Returns `(I_out,1, I_out,2)`, both raw
    generator outputs (not yet composited with the known pixels).
    """

    def __init__(
        self, in_channels: int = 2, out_channels: int = 1, base_channels: int = 48,
        dilations: tuple[int, ...] = (2, 4, 8, 16), fill_value: float = 1.0, gate: str = "full",
        dilated_mult: int = 4,
    ) -> None:
        super().__init__()
        self.fill_value = fill_value
        self.coarse = GatedStage(in_channels, out_channels, base_channels, tuple(dilations), gate, dilated_mult)
        self.refine = GatedStage(out_channels + 1, out_channels, base_channels, tuple(dilations), gate, dilated_mult)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filled = image * (1.0 - mask) + self.fill_value * mask  # P3 §III-C: I ⊙ (1 − M) + M
        out1 = self.coarse(torch.cat([filled, mask], dim=1))
        composed = out1 * mask + image * (1.0 - mask)
        out2 = self.refine(torch.cat([composed, mask], dim=1))  # P3: G_R takes [I_out,1, M]
        return out1, out2


class SNPatchDiscriminator(nn.Module):
    """D_t: six spectrally normalised convs on `[image, mask]` → `(N, 1, H/32, W/32)` scores."""

    def __init__(self, in_channels: int = 2, base_channels: int = 64, n_layers: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i in range(n_layers - 1):  # five stride-2 convs: 1/32 of the patch (P3 §III-C)
            ch = base_channels * min(2**i, 4)
            layers += [spectral_norm(nn.Conv2d(prev, ch, 5, stride=2, padding=2)), nn.LeakyReLU(0.2)]
            prev = ch
        layers.append(spectral_norm(nn.Conv2d(prev, 1, 3, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mask], dim=1))


def downsample_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour resize of a `(N, 1, H, W)` mask (helper for multi-scale use)."""
    return F.interpolate(mask, size=(size, size), mode="nearest")
