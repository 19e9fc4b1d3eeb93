"""Learned generators as synthesis backends, and `load_synthesizer` for any synthesis method.

A `GeneratorBackend` wraps a trained texture/cascade/outpaint/pix2pix generator in the backend
contract of `core/synthesis_backend.py`: it gets a native-scale patch from the synthesis
engine, maps the image's units to the model's range (the checkpoint's, or the image's own
robust range when the units differ — recorded in provenance), runs the generator and hands
the patch back in image units. The engine (`core/synthesis_engine.py`) does every crop and
paste, the same for learned and classical methods.

Shape generators (the P3 DCGAN, P4's M-SG) draw masks through `load_shape_sampler`; P4's
pair generators (B-SG, and MC-SG = M-SG masks → C-SG images) through `load_pair_sampler`.
StyleGAN2 checkpoints sample with the EMA generator and their stored noise maps.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lesion_studio.core.classical.backends import CLASSICAL_FAMILIES, classical_backend
from lesion_studio.core.errors import CheckpointError, ConfigError
from lesion_studio.core.geometry.crops import resize_image, resize_mask
from lesion_studio.core.geometry.shape_cleanup import clean_shape
from lesion_studio.core.intensity import CT_AIR_THRESHOLD_HU, IntensityMapping, mapping_for_range
from lesion_studio.core.model_card import card_image_kinds
from lesion_studio.core.model_catalog import MODES_BY_FAMILY, SHAPE_FAMILIES, modes_of_checkpoint
from lesion_studio.core.synthesis_backend import Patch
from lesion_studio.core.synthesis_engine import SynthesisEngine, SynthesisResult, native_patch_geometry
from lesion_studio.core.synthesis_plan import SynthesisPlan
from lesion_studio.models.checkpoint import build_checked, load_checkpoint
from lesion_studio.models.config import STYLEGAN2_FAMILIES, TrainConfig
from lesion_studio.models.data import Normalizer
from lesion_studio.models.networks import build_generator
from lesion_studio.models.networks.pix2pix import class_condition
from lesion_studio.models.presets import upgrade_sidecar_config
from lesion_studio.models.runtime import bf16_native

IMAGE_FAMILIES = ("texture", "outpaint", "cascade", "pix2pix")
#: `load_synthesizer`'s precision choices.
PRECISIONS = ("fp32", "bf16", "auto")
__all__ = ["GeneratorBackend", "ShapeSampler", "SynthesisEngine", "SynthesisResult", "load_shape_sampler",
           "load_synthesizer", "IMAGE_FAMILIES", "CLASSICAL_FAMILIES", "SHAPE_FAMILIES", "PairSampler",
           "load_pair_sampler"]


class ShapeSampler:
    """A trained shape generator (P3 DCGAN or P4 M-SG): `sample(n, seed)` → `(n, P, P)` bool
    masks (P3: 128), each cleaned (largest component, holes filled, smooth edge)."""

    def __init__(self, generator: torch.nn.Module, z_dim: int, device: torch.device, identity: dict) -> None:
        self.generator, self.z_dim, self.device, self.identity = generator, z_dim, device, identity

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> np.ndarray:
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.z_dim, generator=g).to(self.device)
        raw = (self.generator(z)[:, 0] > 0).cpu().numpy()
        return np.stack([clean_shape(m) if m.any() else m for m in raw])


class StyleGAN2Sampling(torch.nn.Module):
    """A StyleGAN2 generator as samplers call it: `(z[, cond])` → output, with the stored
    noise maps (so a sample is a function of its seed) and truncation ψ (1: none)."""

    def __init__(self, generator: torch.nn.Module, psi: float = 1.0) -> None:
        super().__init__()
        self.generator, self.psi = generator, float(psi)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, cond, psi=self.psi, noise_mode="const")


class PairSampler:
    """Image + mask pairs from P4's generators: B-SG alone, or MC-SG (P4 §3.3: M-SG masks,
    cleaned like every generated shape, condition C-SG). `sample(n, seed)` →
    `(images (n, P, P) float32 in image units, masks (n, P, P) bool)`.

    `clean`: pass each non-empty mask through `clean_shape` (one solid lesion). MC-SG cleans
    before conditioning, so image and mask agree; B-SG draws both at once, so its cleaned mask
    may drop specks the image still shows. False keeps the thresholded masks (several lesions).
    """

    def __init__(self, mode: str, generators: dict[str, torch.nn.Module], z_dims: dict[str, int],
                 normalizer: Normalizer, patch_px: int, device: torch.device, identity: dict, *,
                 clean: bool = True) -> None:
        if mode not in ("bsg", "mcsg"):
            raise ValueError(f"mode must be 'bsg' or 'mcsg', got {mode!r}")
        self.mode, self.generators, self.z_dims = mode, generators, z_dims
        self.normalizer, self.patch_px, self.device = normalizer, int(patch_px), device
        self.identity, self.clean = identity, clean

    def _units(self, images: np.ndarray) -> np.ndarray:
        """StyleGAN2's linear output, clipped to the training range [-1, 1], in image units."""
        return self.normalizer.to_units(np.clip(images, -1.0, 1.0))

    def _clean(self, masks: np.ndarray) -> np.ndarray:
        if not self.clean:
            return masks
        return np.stack([clean_shape(m) if m.any() else m for m in masks])

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        g = torch.Generator().manual_seed(int(seed))
        if self.mode == "bsg":
            z = torch.randn(n, self.z_dims["joint"], generator=g).to(self.device)
            out = self.generators["joint"](z).float().cpu().numpy()
            return self._units(out[:, 0]), self._clean(out[:, 1] > 0)
        z_mask = torch.randn(n, self.z_dims["mask"], generator=g).to(self.device)
        z_image = torch.randn(n, self.z_dims["cond"], generator=g).to(self.device)
        raw = (self.generators["mask"](z_mask)[:, 0] > 0).cpu().numpy()
        masks = self._clean(raw)
        if masks.shape[-1] != self.patch_px:
            masks = np.stack([resize_mask(m, (self.patch_px, self.patch_px)) for m in masks])
        cond = torch.from_numpy(masks[:, None].astype(np.float32) * 2 - 1).to(self.device)
        images = self.generators["cond"](z_image, cond)[:, 0].float().cpu().numpy()
        return self._units(images), masks


class GeneratorBackend:
    """A trained image generator as a synthesis backend (see the module docstring).

    `intensity`: "checkpoint" maps with the training range; "image" with the image's own
    0.5/99.5 % range; "auto" (default) takes the checkpoint's range only when the image's
    range overlaps it (same units), so an 8-bit PNG or HU image is never read as phantom units.
    """

    learned = True

    def __init__(self, family: str, generator: torch.nn.Module, normalizer: Normalizer, patch_px: int,
                 device: torch.device, identity: dict, *, intensity: str = "auto", modes: tuple[str, ...] | None = None,
                 condition_classes: int = 0, bf16: bool = False, image_kinds: tuple[str, ...] = (),
                 outpaint_context_fraction: float = 0.0) -> None:
        self.family = family
        # an outpainter trained with a context band gets the same band from the engine
        self.outpaint_context_fraction = float(outpaint_context_fraction)
        # the image kinds ("ct", "radiograph") the model was trained on, from its card; () = any
        self.image_kinds = tuple(image_kinds)
        self.bf16 = bool(bf16)  # run the generator under bf16 autocast (load_synthesizer's precision)
        # a multi-class pix2pix (P2 §4) gets its footprint as class 1: a request names no class
        self.condition_classes = int(condition_classes)
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
            if self.image_kinds and patch.image_kind not in self.image_kinds:
                name = Path(str(self.identity.get("checkpoint", self.family))).name
                raise ConfigError(f"{name} was trained on {' and '.join(self.image_kinds)} images only (its model "
                                  f"card); this is a {patch.image_kind}: use a classical method or a model trained "
                                  f"on {patch.image_kind}s")
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
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            if self.family == "pix2pix":
                cond = class_condition(torch.from_numpy(conds[:, None].astype(np.float32)), self.condition_classes)
                out = self.generator(cond.to(self.device))
            else:
                _, refined = self.generator(x, m)
        if self.family != "pix2pix":
            out = refined.float() * m + x * (1 - m)
        return out[:, 0].float().cpu().numpy()


def _identity(ck) -> dict:
    return {"checkpoint": str(ck.path), "family": ck.family, "step": ck.step,
            "dataset_fingerprint": ck.meta.get("dataset_fingerprint", ""),
            "package_version": ck.meta.get("package_version", "")}


def _generator_from(ck, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """The generator of a checkpoint and its model config; StyleGAN2 families sample with the
    EMA of G's weights (StyleGAN2), the others with G itself."""
    try:
        config = TrainConfig.from_dict(upgrade_sidecar_config(ck.meta["config"]))  # pre-preset texture: paper layout
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's config cannot be read: {exc}", ck.path) from exc
    name = "generator_ema" if ck.family in STYLEGAN2_FAMILIES else "generator"
    if name not in ck.weights:
        raise CheckpointError(f"the checkpoint has no weights for {name!r} (it has {sorted(ck.weights)})", ck.path)
    generator = build_checked(build_generator, config.model, ck.weights[name], name=name,
                              path=ck.path.with_name(ck.path.name + ".json"))
    return generator.to(device).eval(), config.model


def load_shape_sampler(checkpoint: str | Path, device: str = "cpu", *, psi: float = 1.0) -> ShapeSampler:
    """A trained shape generator (P3 §III-A DCGAN, or P4's M-SG with truncation `psi`) for
    `generator` mask sources."""
    dev = torch.device(device)
    ck = load_checkpoint(checkpoint, device="cpu")
    if ck.family not in SHAPE_FAMILIES:
        raise CheckpointError(f"this is a {ck.family!r} checkpoint; a shape generator "
                              f"({' or '.join(SHAPE_FAMILIES)}) is needed here", ck.path)
    generator, model = _generator_from(ck, dev)
    if ck.family == "stylegan2-mask":
        generator = StyleGAN2Sampling(generator, psi)
    return ShapeSampler(generator, model.z_dim, dev, _identity(ck))


def load_pair_sampler(
    checkpoint: str | Path, device: str = "cpu", *, cond_checkpoint: str | Path | None = None,
    psi: float = 1.0, clean: bool = True,
) -> PairSampler:
    """Generated image + mask pairs (P4): a `stylegan2-joint` checkpoint (B-SG), or a
    `stylegan2-mask` checkpoint with a `stylegan2-cond` `cond_checkpoint` (MC-SG)."""
    dev = torch.device(device)
    first = load_checkpoint(checkpoint, device="cpu")
    if first.family == "stylegan2-joint" and cond_checkpoint is None:
        parts = {"joint": first}
    elif first.family == "stylegan2-mask" and cond_checkpoint is not None:
        parts = {"mask": first, "cond": load_checkpoint(cond_checkpoint, family="stylegan2-cond", device="cpu")}
    else:
        raise CheckpointError(
            f"a {first.family!r} checkpoint{' with cond_checkpoint' if cond_checkpoint else ''} gives no pairs: "
            "use a stylegan2-joint checkpoint alone (B-SG) or a stylegan2-mask one with a stylegan2-cond "
            "cond_checkpoint (MC-SG)", first.path)
    generators, z_dims, patch_px = {}, {}, 0
    for role, ck in parts.items():
        generator, model = _generator_from(ck, dev)
        generators[role], z_dims[role] = StyleGAN2Sampling(generator, psi), model.z_dim
        patch_px = model.patch_px  # the image generator's (joint, or cond: listed last)
    image_ck = parts.get("cond", parts.get("joint"))
    norm = image_ck.meta.get("normalization") or {}
    if "lo" not in norm or "hi" not in norm:
        raise CheckpointError("the checkpoint records no intensity normalisation", image_ck.path)
    identity = {role: _identity(ck) for role, ck in parts.items()}
    return PairSampler("mcsg" if "cond" in parts else "bsg", generators, z_dims,
                       Normalizer(float(norm["lo"]), float(norm["hi"])), patch_px, dev, identity, clean=clean)


def load_synthesizer(
    checkpoint: str | Path, device: str = "cpu", *, shape_checkpoint: str | Path | None = None,
    intensity: str = "auto", precision: str = "fp32",
) -> SynthesisEngine:
    """A synthesis engine for a checkpoint (texture/outpaint/cascade/pix2pix) or a classical
    family name (`telea`, `navier-stokes`, `real-nodule`: no weights needed).

    `shape_checkpoint` (optional): a shape-family checkpoint drawing masks for requests whose
    mask source is `generator` and that bring no `source_mask`.
    `precision`: "fp32" (default: the same pixels on every machine, for exports), "bf16"
    (autocast), or "auto" (bf16 where `runtime.bf16_native` says the device runs it natively,
    about 2x faster on such CPUs; the interactive preview uses it). Recorded in provenance.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    sampler = load_shape_sampler(shape_checkpoint, device) if shape_checkpoint is not None else None
    if str(checkpoint) in CLASSICAL_FAMILIES:
        return SynthesisEngine(classical_backend(str(checkpoint)), shape_sampler=sampler)
    dev = torch.device(device)
    ck = load_checkpoint(checkpoint, device="cpu")
    if ck.family in SHAPE_FAMILIES:
        raise CheckpointError(
            f"a {ck.family!r} checkpoint draws masks, not images; load it with load_shape_sampler "
            f"or pass it as shape_checkpoint=", ck.path,
        )
    if ck.family not in IMAGE_FAMILIES:
        raise CheckpointError(f"a {ck.family!r} checkpoint generates whole image + mask pairs, it does not fill "
                              "a hole; load it with load_pair_sampler", ck.path)
    generator, model = _generator_from(ck, dev)
    norm = ck.meta.get("normalization") or {}
    if "lo" not in norm or "hi" not in norm:
        raise CheckpointError("the checkpoint records no intensity normalisation", ck.path)
    bf16 = precision == "bf16" or (precision == "auto" and bf16_native(dev))
    identity = _identity(ck) | {"precision": "bf16-autocast" if bf16 else "fp32"}
    backend = GeneratorBackend(ck.family, generator, Normalizer(float(norm["lo"]), float(norm["hi"])),
                               model.patch_px, dev, identity, intensity=intensity,
                               modes=modes_of_checkpoint(ck.family, ck.meta),
                               condition_classes=getattr(model, "condition_classes", 0), bf16=bf16,
                               image_kinds=card_image_kinds(ck.meta.get("card")),
                               outpaint_context_fraction=getattr(model, "context_fraction", 0.0))
    return SynthesisEngine(backend, shape_sampler=sampler)
