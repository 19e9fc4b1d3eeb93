"""Learned generators as synthesis backends, and `load_synthesizer` for any synthesis method.

A `GeneratorBackend` wraps a trained texture/cascade/outpaint/pix2pix generator in the backend
contract of `core/synthesis_backend.py`: it gets a native-scale patch from the synthesis
engine, maps the image's units to the model's range (the checkpoint's, or the image's own
robust range when the units differ — recorded in provenance), runs the generator and hands
the patch back in image units. The engine (`core/synthesis_engine.py`) does every crop and
paste, the same for learned and classical methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lesion_studio.core.classical.backends import CLASSICAL_FAMILIES, classical_backend
from lesion_studio.core.errors import CheckpointError, ConfigError
from lesion_studio.core.geometry.crops import resize_image, resize_mask
from lesion_studio.core.geometry.shape_cleanup import clean_shape
from lesion_studio.core.intensity import CT_AIR_THRESHOLD_HU, IntensityMapping, mapping_for_range
from lesion_studio.core.model_catalog import MODES_BY_FAMILY, modes_of_checkpoint
from lesion_studio.core.synthesis_backend import Patch
from lesion_studio.core.synthesis_engine import SynthesisEngine, SynthesisResult, native_patch_geometry
from lesion_studio.core.synthesis_plan import SynthesisPlan
from lesion_studio.models.checkpoint import build_checked, load_checkpoint
from lesion_studio.models.config import TrainConfig
from lesion_studio.models.data import Normalizer
from lesion_studio.models.networks import build_generator

IMAGE_FAMILIES = ("texture", "outpaint", "cascade", "pix2pix")
__all__ = ["GeneratorBackend", "ShapeSampler", "SynthesisEngine", "SynthesisResult", "load_shape_sampler",
           "load_synthesizer", "IMAGE_FAMILIES", "CLASSICAL_FAMILIES"]


class ShapeSampler:
    """A trained P3 shape generator: `sample(n, seed)` → `(n, 128, 128)` bool masks, each
    cleaned (largest component, holes filled, smooth edge)."""

    def __init__(self, generator: torch.nn.Module, z_dim: int, device: torch.device, identity: dict) -> None:
        self.generator, self.z_dim, self.device, self.identity = generator, z_dim, device, identity

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> np.ndarray:
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.z_dim, generator=g).to(self.device)
        raw = (self.generator(z)[:, 0] > 0).cpu().numpy()
        return np.stack([clean_shape(m) if m.any() else m for m in raw])


class GeneratorBackend:
    """A trained image generator as a synthesis backend (see the module docstring).

    `intensity`: "checkpoint" maps with the training range; "image" with the image's own
    0.5/99.5 % range; "auto" (default) takes the checkpoint's range only when the image's
    range overlaps it (same units), so an 8-bit PNG or HU image is never read as phantom units.
    """

    learned = True

    def __init__(self, family: str, generator: torch.nn.Module, normalizer: Normalizer, patch_px: int,
                 device: torch.device, identity: dict, *, intensity: str = "auto", modes: tuple[str, ...] | None = None) -> None:
        self.family = family
        self.generator = generator
        self.normalizer = normalizer
        self.patch_px = int(patch_px)
        self.device = device
        self.identity = identity
        self.intensity = intensity
        mapping_for_range((0.0, 1.0), (0.0, 1.0), intensity)  # validates the policy name
        self.modes = tuple(modes if modes is not None else MODES_BY_FAMILY.get(family, ()))

    def patch_geometry(self, plan: SynthesisPlan) -> tuple[int, float]:
        return native_patch_geometry(plan, self.patch_px)

    def shape_bank(self, image_kind: str) -> None:
        return None

    def mapping(self, patch: Patch) -> IntensityMapping:
        policy = self.intensity
        if policy == "auto" and patch.image_kind == "ct" and self.normalizer.lo <= CT_AIR_THRESHOLD_HU:
            # a CT slice and a checkpoint trained in HU share units: the range test of "auto" would
            # otherwise read a slice with out-of-field padding (−3024 / −2048 HU) as other units
            policy = "checkpoint"
        return mapping_for_range(patch.image_range, (self.normalizer.lo, self.normalizer.hi), policy)

    def fill_info(self, patch: Patch) -> dict[str, Any]:
        return {"intensity": self.mapping(patch).to_dict()}

    def fill(self, patches: Sequence[Patch]) -> list[np.ndarray]:
        if not patches:
            return []
        n = self.patch_px
        xs, ms, conds, norms = [], [], [], []
        for patch in patches:
            mapping = self.mapping(patch)
            norm = Normalizer(mapping.lo, mapping.hi)
            xs.append(norm.to_model(resize_image(patch.pixels, (n, n))))
            ms.append(resize_mask(patch.region, (n, n)))
            conds.append(resize_mask(patch.footprint, (n, n)))
            norms.append(norm)
        generated = self._run(np.stack(xs), np.stack(ms), np.stack(conds))
        out = []
        for patch, gen, norm in zip(patches, generated, norms):
            units = norm.to_units(gen)
            out.append(resize_image(units, patch.pixels.shape))
        return out

    @torch.no_grad()
    def _run(self, crops: np.ndarray, regions: np.ndarray, conds: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(crops[:, None]).to(self.device)
        m = torch.from_numpy(regions[:, None].astype(np.float32)).to(self.device)
        if self.family == "pix2pix":
            cond = torch.from_numpy(conds[:, None].astype(np.float32)).to(self.device) * 2 - 1
            out = self.generator(cond)
        else:
            _, refined = self.generator(x, m)
            out = refined * m + x * (1 - m)
        return out[:, 0].float().cpu().numpy()


def _identity(ck) -> dict:
    return {"checkpoint": str(ck.path), "family": ck.family, "step": ck.step,
            "dataset_fingerprint": ck.meta.get("dataset_fingerprint", ""),
            "package_version": ck.meta.get("package_version", "")}


def _generator_from(ck, device: torch.device) -> tuple[torch.nn.Module, Any]:
    try:
        config = TrainConfig.from_dict(ck.meta["config"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's config cannot be read: {exc}", ck.path) from exc
    if "generator" not in ck.weights:
        raise CheckpointError(f"the checkpoint has no weights for 'generator' (it has {sorted(ck.weights)})", ck.path)
    generator = build_checked(build_generator, config.model, ck.weights["generator"], name="generator",
                              path=ck.path.with_name(ck.path.name + ".json"))
    return generator.to(device).eval(), config.model


def load_shape_sampler(checkpoint: str | Path, device: str = "cpu") -> ShapeSampler:
    """A trained shape generator (P3 §III-A) for `generator` mask sources."""
    dev = torch.device(device)
    ck = load_checkpoint(checkpoint, family="shape", device="cpu")
    generator, model = _generator_from(ck, dev)
    return ShapeSampler(generator, model.z_dim, dev, _identity(ck))


def load_synthesizer(
    checkpoint: str | Path, device: str = "cpu", *, shape_checkpoint: str | Path | None = None,
    intensity: str = "auto",
) -> SynthesisEngine:
    """A synthesis engine for a checkpoint (texture/outpaint/cascade/pix2pix) or a classical
    family name (`telea`, `navier-stokes`, `real-nodule`: no weights needed).

    `shape_checkpoint` (optional): a shape-family checkpoint drawing masks for requests whose
    mask source is `generator` and that bring no `source_mask`.
    """
    sampler = load_shape_sampler(shape_checkpoint, device) if shape_checkpoint is not None else None
    if str(checkpoint) in CLASSICAL_FAMILIES:
        return SynthesisEngine(classical_backend(str(checkpoint)), shape_sampler=sampler)
    dev = torch.device(device)
    ck = load_checkpoint(checkpoint, device="cpu")
    if ck.family not in IMAGE_FAMILIES:
        raise CheckpointError(
            f"a {ck.family!r} checkpoint draws masks, not images; load it with load_shape_sampler "
            f"or pass it as shape_checkpoint=", ck.path,
        )
    generator, model = _generator_from(ck, dev)
    norm = ck.meta.get("normalization") or {}
    if "lo" not in norm or "hi" not in norm:
        raise CheckpointError("the checkpoint records no intensity normalisation", ck.path)
    backend = GeneratorBackend(ck.family, generator, Normalizer(float(norm["lo"]), float(norm["hi"])),
                               model.patch_px, dev, _identity(ck), intensity=intensity,
                               modes=modes_of_checkpoint(ck.family, ck.meta))
    return SynthesisEngine(backend, shape_sampler=sampler)
