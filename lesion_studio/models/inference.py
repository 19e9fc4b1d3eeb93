"""`load_synthesizer`: a trained checkpoint as one callable the GUI preview and batch export share.

The synthesizer hides cropping, resizing, normalisation and pasting (IOPaint's
`InpaintModel.__call__`): it resolves each `SynthesisRequest` into a `SynthesisPlan`
(core geometry: P0 crops, P3 size modulation), runs the generator on the plan's model
inputs and lets the plan paste the result back. It returns the composited image, the new
lesion mask and a JSON-ready provenance record (the plan plus the model's identity).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lesion_studio.core.errors import CheckpointError, ConfigError
from lesion_studio.core.geometry.crops import extract_crop, resize_mask
from lesion_studio.core.image import MedicalImage
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.synthesis_plan import SynthesisPlan, SynthesisRequest, build_plan
from lesion_studio.models.checkpoint import load_checkpoint
from lesion_studio.models.config import TrainConfig
from lesion_studio.models.data import Normalizer
from lesion_studio.models.networks import build_generator

IMAGE_FAMILIES = ("texture", "outpaint", "cascade", "pix2pix")


@dataclass(frozen=True, eq=False)
class SynthesisResult:
    """`image` `(H, W)` float32 in the input's units; `mask` `(H, W)` bool; `provenance` JSON-ready."""

    image: np.ndarray
    mask: np.ndarray
    provenance: dict[str, Any]
    plan: SynthesisPlan


class ShapeSampler:
    """A trained P3 shape generator: `sample(n, seed)` → `(n, 128, 128)` bool masks."""

    def __init__(self, generator: torch.nn.Module, z_dim: int, device: torch.device, identity: dict) -> None:
        self.generator, self.z_dim, self.device, self.identity = generator, z_dim, device, identity

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> np.ndarray:
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.z_dim, generator=g).to(self.device)
        return (self.generator(z)[:, 0] > 0).cpu().numpy()


class Synthesizer:
    """Call with a full image and one request (→ `SynthesisResult`) or several (→ a list)."""

    def __init__(self, family: str, generator: torch.nn.Module, normalizer: Normalizer, patch_px: int,
                 device: torch.device, identity: dict, shape_sampler: ShapeSampler | None = None) -> None:
        self.family = family
        self.generator = generator
        self.normalizer = normalizer
        self.patch_px = patch_px
        self.device = device
        self.identity = identity
        self.shape_sampler = shape_sampler

    def _check_mode(self, request: SynthesisRequest) -> None:
        if (self.family == "outpaint") != (request.mode == "outpaint"):
            wanted = "outpaint" if self.family == "outpaint" else "inpaint or remove"
            raise ConfigError(f"a {self.family} model serves {wanted} requests, not {request.mode!r}")

    def __call__(
        self,
        image: MedicalImage | np.ndarray,
        request: SynthesisRequest | Sequence[SynthesisRequest],
        *,
        lesion_mask: np.ndarray | None = None,
        source_mask: np.ndarray | None = None,
        bank: MaskBank | None = None,
        spacing_mm: tuple[float, float] | None = None,
        intensity: str = "auto",
    ) -> SynthesisResult | list[SynthesisResult]:
        """Each request is applied to the same input image; a batch runs one generator pass.

        `intensity`: how image units map to the model's [-1, 1]. "checkpoint" uses the range
        recorded at training (right for images like the training data); "image" uses this
        image's own 0.5/99.5 percentiles (a model trained on other units or another scanner);
        "auto" takes "checkpoint" unless most of the image lies outside that range.
        """
        if isinstance(image, MedicalImage):
            pixels = image.pixels
            spacing_mm = spacing_mm if spacing_mm is not None else image.spacing_mm
        else:
            pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim != 2:
            raise ConfigError(f"synthesis works on one 2D image or slice, got shape {pixels.shape}")
        normalizer, intensity_source = self._normalizer_for(pixels, intensity)
        single = isinstance(request, SynthesisRequest)
        requests = [request] if single else list(request)
        current_mask = np.zeros(pixels.shape, bool) if lesion_mask is None else np.asarray(lesion_mask) > 0
        plans, crops, regions, conds, notes = [], [], [], [], []
        for req in requests:
            self._check_mode(req)
            req = dataclasses.replace(req, model_input_px=self.patch_px)  # the model's trained input size
            src, note = source_mask, None
            if req.mask_source.kind == "generator" and src is None:
                if self.shape_sampler is None:
                    raise ConfigError("a 'generator' mask source needs a shape checkpoint (shape_checkpoint=...)")
                src = self.shape_sampler.sample(1, req.seed)[0]
                note = {"shape_generator": self.shape_sampler.identity, "shape_seed": req.seed}
            plan = build_plan(req, pixels.shape, spacing_mm=spacing_mm, source_mask=src,
                              lesion_mask=current_mask, bank=bank)
            crop, region = plan.model_inputs(pixels)
            plans.append(plan)
            crops.append(normalizer.to_model(crop))
            regions.append(region)
            notes.append(note)
            if self.family == "pix2pix":  # the condition: every lesion in the crop after the plan
                after = plan.paste_mask(current_mask)
                conds.append(resize_mask(extract_crop(after, plan.context), (self.patch_px, self.patch_px)))
        generated = self._run(np.stack(crops), np.stack(regions), np.stack(conds) if conds else None)
        results = []
        for plan, gen, note in zip(plans, generated, notes):
            out_image = plan.paste(pixels, normalizer.to_units(gen))
            provenance = {
                "plan": plan.to_dict(), "model": dict(self.identity),
                "intensity": {"source": intensity_source, **normalizer.to_dict()},
            }
            if note:
                provenance["mask_generator"] = note
            results.append(SynthesisResult(out_image, plan.paste_mask(current_mask), provenance, plan))
        return results[0] if single else results

    def _normalizer_for(self, pixels: np.ndarray, intensity: str) -> tuple[Normalizer, str]:
        if intensity not in ("auto", "checkpoint", "image"):
            raise ConfigError(f"intensity must be auto, checkpoint or image, got {intensity!r}")
        if intensity == "checkpoint":
            return self.normalizer, "checkpoint"
        sample = pixels.ravel()[:: max(1, pixels.size // 200_000)]
        if intensity == "auto":
            lo, hi = self.normalizer.lo, self.normalizer.hi
            margin = 0.25 * (hi - lo)
            inside = np.mean((sample >= lo - margin) & (sample <= hi + margin))
            if inside >= 0.5:
                return self.normalizer, "checkpoint"
        lo, hi = np.percentile(sample, [0.5, 99.5])
        return Normalizer(float(lo), float(max(hi, lo + 1e-6))), "image"

    @torch.no_grad()
    def _run(self, crops: np.ndarray, regions: np.ndarray, conds: np.ndarray | None) -> np.ndarray:
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
    generator = build_generator(config.model)
    ck.load_into({"generator": generator})
    return generator.to(device).eval(), config.model


def load_shape_sampler(checkpoint: str | Path, device: str = "cpu") -> ShapeSampler:
    """A trained shape generator (P3 §III-A) for `generator` mask sources."""
    dev = torch.device(device)
    ck = load_checkpoint(checkpoint, family="shape", device="cpu")
    generator, model = _generator_from(ck, dev)
    return ShapeSampler(generator, model.z_dim, dev, _identity(ck))


def load_synthesizer(checkpoint: str | Path, device: str = "cpu", *, shape_checkpoint: str | Path | None = None) -> Synthesizer:
    """The image generator of a texture/outpaint/cascade/pix2pix checkpoint, ready to call.

    `shape_checkpoint` (optional): a shape-family checkpoint drawing masks for requests whose
    mask source is `generator` and that bring no `source_mask`.
    """
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
    sampler = load_shape_sampler(shape_checkpoint, device) if shape_checkpoint is not None else None
    return Synthesizer(ck.family, generator, Normalizer(float(norm["lo"]), float(norm["hi"])),
                       model.patch_px, dev, _identity(ck), sampler)
