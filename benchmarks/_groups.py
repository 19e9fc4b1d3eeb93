"""The generator groups the speed benchmarks measure: each family's configs next to a reference.

A group is one task at one size: lesion-studio's generators for it (texture presets, cascade,
pix2pix) and a published network of the same task (`reference_networks.py`), built in the same
process so that ratios (`gflop_ratio`, `time_ratio`) compare like with like.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference_networks import DeepFillV2, UNet256  # noqa: E402
from lesion_studio.models.config import default_config  # noqa: E402
from lesion_studio.models.networks import build_generator  # noqa: E402
from lesion_studio.models.presets import preset_names  # noqa: E402


@dataclass
class Entry:
    """One network of a group: its row name, the family config (None: the reference), the module."""

    name: str
    model: object | None  # the family's model config; None for the reference network
    net: nn.Module
    reference: bool = False


@dataclass
class Group:
    """A task at one patch size: candidates and the reference they are compared with."""

    family: str
    patch_px: int
    entries: list[Entry]
    call: Callable[[nn.Module, torch.Tensor, torch.Tensor], object]  # net, image, mask -> output

    @property
    def reference(self) -> Entry:
        return next(e for e in self.entries if e.reference)


def _inpaint_call(net: nn.Module, image: torch.Tensor, mask: torch.Tensor):
    return net(image, mask)


def _pix2pix_call(net: nn.Module, image: torch.Tensor, mask: torch.Tensor):
    return net(mask * 2 - 1)


def build_group(family: str, *, presets: tuple[str, ...] | None = None) -> Group:
    """The group of `family` at its paper size: texture presets (all by default), the cascade
    (default and P0's literal dilations), or pix2pix, each with its reference network."""
    if family == "texture":
        entries = []
        for preset in presets or preset_names():
            model = dataclasses.replace(default_config("texture").model, preset=preset)
            entries.append(Entry(f"texture:{preset}", model, build_generator(model)))
        entries.append(Entry("deepfillv2", None, DeepFillV2(channels=1), reference=True))
        return Group("texture", 256, entries, _inpaint_call)
    if family == "cascade":
        model = default_config("cascade").model
        paper = dataclasses.replace(model, dilations=[2, 4, 8, 16])
        entries = [Entry("cascade", model, build_generator(model)),
                   Entry("cascade:P0-dilations-2-4-8-16", paper, build_generator(paper)),
                   Entry("deepfillv2", None, DeepFillV2(channels=1), reference=True)]
        return Group("cascade", model.patch_px, entries, _inpaint_call)
    if family == "pix2pix":
        model = default_config("pix2pix").model
        entries = [Entry("pix2pix", model, build_generator(model)),
                   Entry("unet_256", None, UNet256(1, 1), reference=True)]
        return Group("pix2pix", 256, entries, _pix2pix_call)
    raise SystemExit(f"no benchmark group for family {family!r} (texture, cascade, pix2pix)")


def example_batch(n: int, batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images in [-1, 1] and a centred square hole of a quarter of the side."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(batch, 1, n, n, generator=g) * 2 - 1).to(device)
    masks = torch.zeros(batch, 1, n, n, device=device)
    masks[..., 3 * n // 8 : 5 * n // 8, 3 * n // 8 : 5 * n // 8] = 1
    return images, masks


def gflop(fn: Callable[[], object]) -> float:
    """GFLOP of one call of `fn` as torch's FlopCounterMode counts them (convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def params_m(net: nn.Module) -> float:
    """Parameters in millions."""
    return round(sum(p.numel() for p in net.parameters()) / 1e6, 3)


def load_1m() -> float:
    """The 1-minute load average (-1 where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return -1.0
