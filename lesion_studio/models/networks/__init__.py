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
from lesion_studio.models.networks.unet_cascade import (
    CascadedUNet,
    DilatedUNet,
    GlobalLocalDiscriminator,
    PatchDiscriminator,
)

__all__ = [
    "build_generator", "build_discriminator", "ShapeGenerator", "ShapeDiscriminator",
    "TextureGenerator", "SNPatchDiscriminator", "GatedConv2d", "CascadedUNet", "DilatedUNet",
    "GlobalLocalDiscriminator", "PatchDiscriminator", "UNetGenerator", "NLayerDiscriminator",
]


def build_generator(config) -> nn.Module:
    """The generator of `config.family` (shape, texture, outpaint, cascade, pix2pix)."""
    family = config.family
    if family == "shape":
        return ShapeGenerator(config.z_dim, config.base_channels, config.patch_px)
    if family in ("texture", "outpaint"):
        return TextureGenerator(
            config.in_channels, config.out_channels, config.base_channels,
            tuple(config.dilations), config.fill_value,
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
    raise ConfigError(f"family: no discriminator named {family!r}")
