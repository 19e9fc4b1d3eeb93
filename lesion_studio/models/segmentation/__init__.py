"""Downstream segmentation networks (SPEC §3.1) and their losses; `build_segmenter` picks by name."""

from __future__ import annotations

from torch import nn

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.segmentation.losses import FocalTverskyLoss, SoftDiceLoss, build_loss
from lesion_studio.models.segmentation.multiresunet import MultiResUNet
from lesion_studio.models.segmentation.unet import UNet

SEGMENTERS = ("unet", "multiresunet")


def build_segmenter(arch: str, *, base_channels: int = 32, depth: int = 4, norm: str = "batch") -> nn.Module:
    """A 1-channel-in, 1-logit-out segmenter by name: 'unet' or 'multiresunet'."""
    if norm not in ("batch", "instance"):
        raise ConfigError(f"unknown norm {norm!r}; expected 'batch' or 'instance'")
    if arch == "unet":
        return UNet(base_channels=base_channels, depth=depth, norm=norm)
    if arch == "multiresunet":
        return MultiResUNet(base_channels=base_channels, depth=depth, norm=norm)
    raise ConfigError(f"unknown segmentation architecture {arch!r}; expected one of {SEGMENTERS}")


__all__ = ["SEGMENTERS", "FocalTverskyLoss", "MultiResUNet", "SoftDiceLoss", "UNet", "build_loss",
           "build_segmenter"]
