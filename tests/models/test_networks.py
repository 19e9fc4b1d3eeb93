"""Forward shapes and parameter counts of every family at paper sizes (meta device) and tiny CPU runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.config import default_config
from lesion_studio.models.networks import (
    GatedConv2d,
    build_discriminator,
    build_generator,
)

#: (generator params, discriminator params) at the SPEC defaults, pinned so a silent
#: architecture change is noticed. pix2pix matches junyanz's unet_256 (54.4 M) for 1→1 channels.
#: texture/outpaint: the `light` preset (the `paper` preset's 10,351,346 are pinned in
#: test_presets.py); cascade: dilations 2, 4, 8 (35,247,746 with P0's 2, 4, 8, 16).
PARAM_COUNTS = {
    "shape": (3_606_977, 2_795_937),
    "texture": (1_136_462, 4_307_265),
    "outpaint": (1_136_462, 4_307_265),
    "cascade": (30_526_082, 3_414_914),
    "pix2pix": (54_407_809, 2_764_609),
}


def _run(family: str, model, G, D, n: int, batch: int):
    if family == "shape":
        out = G(torch.randn(batch, model.z_dim))
        return out, (D(out),)
    if family == "pix2pix":
        m = torch.rand(batch, 1, n, n)
        out = G(m)
        return out, (D(m, out),)
    x = torch.rand(batch, 1, n, n) * 2 - 1
    m = (torch.rand(batch, 1, n, n) > 0.7).float()
    out1, out2 = G(x, m)
    assert out1.shape == out2.shape
    if family == "cascade":
        return out2, D(out2, out2[:, :, : model.local_px, : model.local_px])
    return out2, (D(out2, m),)


EXPECTED_D = {
    "shape": [(2, 1)],
    "texture": [(2, 1, 8, 8)],  # P3 §III-C: 1/32 of 256²
    "outpaint": [(2, 1, 8, 8)],
    "cascade": [(2, 1, 8, 8), (2, 1, 6, 6)],  # 4 blocks on 128², 3 blocks on 48²
    "pix2pix": [(2, 1, 30, 30)],  # SPEC §2.4: 30×30 at 256²
}


@pytest.mark.parametrize("family", list(PARAM_COUNTS))
def test_paper_size_shapes_and_parameter_counts(family: str) -> None:
    model = default_config(family).model
    with torch.device("meta"):
        G, D = build_generator(model), build_discriminator(model)
        out, d_out = _run(family, model, G, D, model.patch_px, 2)
    assert tuple(out.shape) == (2, 1, model.patch_px, model.patch_px)
    assert [tuple(t.shape) for t in d_out] == EXPECTED_D[family]
    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    assert (n_g, n_d) == PARAM_COUNTS[family]


TINY = {
    "shape": dict(base_channels=16, patch_px=32),
    "texture": dict(base_channels=4, disc_channels=4, patch_px=32),
    "outpaint": dict(base_channels=4, disc_channels=4, patch_px=32),
    "cascade": dict(base_channels=4, disc_channels=4, patch_px=32, local_px=16),
    "pix2pix": dict(base_channels=4, disc_channels=4, patch_px=32, num_downs=5),
}


@pytest.mark.parametrize("family", list(TINY))
def test_tiny_widths_run_on_cpu_with_gradients(family: str) -> None:
    torch.manual_seed(0)
    model = dataclasses.replace(default_config(family).model, **TINY[family])
    G, D = build_generator(model), build_discriminator(model)
    out, d_out = _run(family, model, G, D, model.patch_px, 2)
    assert out.shape == (2, 1, 32, 32)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    sum(t.mean() for t in d_out).backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad)


def test_gated_conv_is_leaky_relu_times_sigmoid_gate_then_instance_norm() -> None:
    torch.manual_seed(0)
    layer = GatedConv2d(2, 3, 3)
    x = torch.randn(1, 2, 8, 8)
    f, g = layer.conv(x).chunk(2, dim=1)
    expected = layer.norm(torch.nn.functional.leaky_relu(f, 0.2) * torch.sigmoid(g))
    assert torch.allclose(layer(x), expected)
    assert isinstance(layer.norm, torch.nn.InstanceNorm2d)


def test_texture_generator_uses_four_dilations_and_nearest_upsampling() -> None:
    G = build_generator(default_config("texture").model)
    dilations = [m.conv.dilation[0] for m in G.coarse.bottleneck if isinstance(m, GatedConv2d)]
    assert dilations[:4] == [2, 4, 8, 16]
    ups = [m for m in G.coarse.decoder if isinstance(m, torch.nn.Upsample)]
    assert len(ups) == 2 and all(u.mode == "nearest" for u in ups)


def test_texture_discriminator_is_spectrally_normalised_everywhere() -> None:
    D = build_discriminator(default_config("texture").model)
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 and all(hasattr(c, "weight_orig") for c in convs)


def test_unknown_family_is_a_config_error() -> None:
    model = dataclasses.replace(default_config("texture").model, family="stylegan9")
    with pytest.raises(ConfigError, match="stylegan9"):
        build_generator(model)
