"""Generator and discriminator factories: pick a network by the config's family name.

`build_generator(config)` / `build_discriminator(config)` play the role of pix2pix's
`define_G` / `define_D`: every architecture choice comes from the config dataclass.
"""

from __future__ import annotations

from torch import nn

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.networks.dcgan import ShapeDiscriminator, ShapeGenerator
from lesion_studio.models.networks.gated_conv import GatedConv2d, SNPatchDiscriminator, TextureGenerator
from lesion_studio.models.networks.pix2pix import NLayerDiscriminator, UNetGenerator
from lesion_studio.models.networks.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from lesion_studio.models.networks.unet_cascade import (
    CascadedUNet,
    DilatedUNet,
    GlobalLocalDiscriminator,
    PatchDiscriminator,
)
from lesion_studio.models.presets import resolve_preset

__all__ = [
    "build_generator", "build_discriminator", "ShapeGenerator", "ShapeDiscriminator",
    "TextureGenerator", "SNPatchDiscriminator", "GatedConv2d", "CascadedUNet", "DilatedUNet",
    "GlobalLocalDiscriminator", "PatchDiscriminator", "UNetGenerator", "NLayerDiscriminator",
    "StyleGAN2Generator", "StyleGAN2Discriminator", "stylegan2_channels",
]

#: (generated channels, condition channels) of the StyleGAN2 families (P4 §3): B-SG makes
#: image + mask, M-SG the mask, C-SG the image given the mask.
_STYLEGAN2_IO = {"stylegan2-joint": (2, 0), "stylegan2-mask": (1, 0), "stylegan2-cond": (1, 1)}


def stylegan2_channels(family: str) -> tuple[int, int]:
    """`(out_channels, cond_channels)` of a StyleGAN2 family."""
    return _STYLEGAN2_IO[family]


def build_generator(config) -> nn.Module:
    """The generator of `config.family` (shape, texture, outpaint, cascade, pix2pix, stylegan2-*)."""
    family = config.family
    if family == "shape":
        return ShapeGenerator(config.z_dim, config.base_channels, config.patch_px)
    if family in ("texture", "outpaint"):
        config = resolve_preset(config)  # unset architecture fields take the preset's numbers
        return TextureGenerator(
            config.in_channels, config.out_channels, config.base_channels,
            tuple(config.dilations), config.fill_value, config.gate, config.dilated_mult,
        )
    if family == "cascade":
        return CascadedUNet(
            config.in_channels, config.out_channels, config.base_channels, config.depth,
            tuple(config.dilations), config.fill_value,
        )
    if family == "pix2pix":
        return UNetGenerator(
            config.in_channels, config.out_channels, config.base_channels, config.num_downs, config.dropout,
        )
    if family in _STYLEGAN2_IO:
        out_ch, cond_ch = _STYLEGAN2_IO[family]
        return StyleGAN2Generator(
            config.z_dim, config.w_dim, config.patch_px, out_ch, cond_ch, mapping_layers=config.mapping_layers,
            mapping_lr_mul=config.mapping_lr_mul, channel_base=config.channel_base, channel_max=config.channel_max,
        )
    raise ConfigError(f"family: no generator named {family!r}")


def build_discriminator(config) -> nn.Module:
    """The discriminator of `config.family`."""
    family = config.family
    if family == "shape":
        return ShapeDiscriminator(config.base_channels, config.patch_px)
    if family in ("texture", "outpaint"):
        return SNPatchDiscriminator(config.out_channels + 1, config.disc_channels, config.disc_layers)
    if family == "cascade":
        return GlobalLocalDiscriminator(
            config.out_channels, config.disc_channels, config.global_blocks, config.local_blocks,
        )
    if family == "pix2pix":
        return NLayerDiscriminator(
            config.in_channels + config.out_channels, config.disc_channels, config.disc_layers,
        )
    if family in _STYLEGAN2_IO:
        in_ch, cond_ch = _STYLEGAN2_IO[family]
        return StyleGAN2Discriminator(
            config.patch_px, in_ch, cond_ch, channel_base=config.channel_base, channel_max=config.channel_max,
            mbstd_group=config.mbstd_group,
        )
    raise ConfigError(f"family: no discriminator named {family!r}")
