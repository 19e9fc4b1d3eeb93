"""The one synthesis path: request → plan → native-scale patch → backend → hole-only paste.

The GUI preview, Accept, File ▸ Export, batch export and the experiments all call a
`SynthesisEngine`; only the backend (a learned generator or a classical method) differs.
For each request the engine

1. resolves it into a `SynthesisPlan` (core geometry: shape, P3 size modulation, pose) —
   shapes are cleaned (one component, no holes, smooth edge) before they are placed;
2. cuts a square patch around the lesion at the image's own pixel scale (P3 §III-B), or
   downsampled by at most 2× when a fixed-size model cannot otherwise hold the lesion;
3. lets the backend fill the patch (in image units);
4. writes back only the generated region plus a feathered seam of `feather_px`: every pixel
   farther than that from the region is bit-identical to the input (outpaint regenerates
   the surroundings inside the patch and keeps the lesion bit-identical);
5. returns the image, the new lesion mask and a JSON-ready provenance record.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.composition import context_band_px, outpaint_region
from lesion_studio.core.geometry.crops import (
    PixelBox,
    extract_crop,
    feather_weights,
    place_footprint,
    resize_image,
    resize_mask,
    square_box_around,
)
from lesion_studio.core.image import MedicalImage
from lesion_studio.core.intensity import image_kind, robust_range
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.synthesis_backend import Patch, SynthesisBackend
from lesion_studio.core.synthesis_plan import MaskSource, SynthesisPlan, SynthesisRequest, build_plan

#: Largest downsampling a model patch may use (the issue's rule: "at most 2×").
MAX_PATCH_DOWNSAMPLING = 2.0


@dataclass(frozen=True, eq=False)
class SynthesisResult:
    """`image` (H, W) float32 in the input's units; `mask` (H, W) bool lesions after the
    request; `box` the patch (image pixels) the backend saw; `provenance` JSON-ready."""

    image: np.ndarray
    mask: np.ndarray
    provenance: dict[str, Any]
    plan: SynthesisPlan
    box: PixelBox


def native_patch_geometry(plan: SynthesisPlan, model_px: int) -> tuple[int, float]:
    """Crop side and downsampling for a fixed `model_px` input: native scale while the lesion's
    P0 mask crop (1.2× its extent) fills at most half of the input, else downsampled by at most
    2×; a larger lesion raises ConfigError naming the sizes."""
    needed = plan.mask_crop.width / (model_px / 2.0)
    scale = max(1.0, needed)
    if scale > MAX_PATCH_DOWNSAMPLING + 1e-9:
        raise ConfigError(
            f"a lesion of {plan.mask_crop.width:.0f} px (with margin) does not fit this model's "
            f"{model_px} px input even at {MAX_PATCH_DOWNSAMPLING:g}× downsampling; use a smaller "
            f"diameter, a model with a larger input, or a classical method")
    return int(math.ceil(model_px * scale)), float(scale)


def seam_alpha(region: np.ndarray, feather_px: float) -> np.ndarray:
    """1 inside `region`, falling linearly to 0 at `feather_px` outside it (float32)."""
    region = np.asarray(region, dtype=bool)
    if feather_px <= 0 or not region.any():
        return region.astype(np.float32)
    outside = ndimage.distance_transform_edt(~region)  # 0 inside, 1 for a touching pixel
    alpha = np.clip(1.0 - outside / (float(feather_px) + 1.0), 0.0, 1.0)
    return np.where(outside <= feather_px, alpha, 0.0).astype(np.float32)  # nothing beyond the feather


def composite(image: np.ndarray, generated: np.ndarray, box: PixelBox, alpha: np.ndarray) -> np.ndarray:
    """`image` with `alpha·generated + (1 − alpha)·original` written inside `box`; a copy.

    Pixels where alpha is 0 — and every pixel outside the box — stay bit-identical.
    """
    image = np.asarray(image)
    out = image.copy()
    where = box.inside(image.shape)
    if where is None:
        return out
    img_r, img_c, crop_r, crop_c = where
    original = extract_crop(image, box)
    blended = alpha * np.asarray(generated, np.float32) + (1.0 - alpha) * original.astype(np.float32)
    blended = np.where(alpha > 0.0, blended.astype(image.dtype), original)
    out[img_r, img_c] = blended[crop_r, crop_c]
    return out


def _inside_image(plan: SynthesisPlan, box: PixelBox) -> np.ndarray:
    """Box pixels that lie inside the image (bool, `box.shape`)."""
    rows = np.arange(box.row0, box.row0 + box.height)
    cols = np.arange(box.col0, box.col0 + box.width)
    return ((rows >= 0) & (rows < plan.image_shape[0]))[:, None] & ((cols >= 0) & (cols < plan.image_shape[1]))[None, :]


def _footprint_in_box(plan: SynthesisPlan, box: PixelBox) -> np.ndarray:
    """The plan's footprint in the box frame, limited to pixels inside the image (the part of
    a border lesion beyond the image does not exist and must not pull the seam inwards)."""
    footprint = place_footprint(box.shape, plan.footprint, plan.footprint_origin[0] - box.row0,
                                plan.footprint_origin[1] - box.col0)
    return footprint & _inside_image(plan, box)


def _mirrored_footprint(plan: SynthesisPlan, box: PixelBox) -> np.ndarray:
    """Box pixels outside the image whose reflect padding copies a footprint pixel.

    `extract_crop` reflect-pads a patch that overhangs the image border, so near the border a
    mirror image of the hole's own pixels (the lesion being removed, or the tissue a new
    lesion replaces) would sit in the backend's context. These pixels join the region the
    backend fills; the paste still writes only the footprint.
    """
    return extract_crop(plan.footprint_image(), box) & ~_inside_image(plan, box)


class SynthesisEngine:
    """A backend wrapped in the one synthesis path; call it with an image and request(s).

    `shape_sampler` (optional): an object with `sample(n, seed) -> (n, S, S) bool` and an
    `identity` dict, drawing shapes for `generator` mask sources.
    """

    def __init__(self, backend: SynthesisBackend, *, shape_sampler: Any = None) -> None:
        self.backend = backend
        self.shape_sampler = shape_sampler

    @property
    def family(self) -> str:
        return self.backend.family

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.backend.modes)

    @property
    def identity(self) -> dict[str, Any]:
        return dict(self.backend.identity)

    @property
    def patch_px(self) -> int:
        """The model's input size (a classical method has none: 0)."""
        return int(getattr(self.backend, "patch_px", 0))

    def own_bank(self, kind: str) -> MaskBank | None:
        """The backend's own lesion shapes for this image kind (real-nodule insertion), or None."""
        return self.backend.shape_bank(kind)

    def __call__(
        self,
        image: MedicalImage | np.ndarray,
        request: SynthesisRequest | Sequence[SynthesisRequest],
        *,
        lesion_mask: np.ndarray | None = None,
        source_mask: np.ndarray | None = None,
        bank: MaskBank | None = None,
        spacing_mm: tuple[float, float] | None = None,
        modality: str | None = None,
    ) -> SynthesisResult | list[SynthesisResult]:
        """Each request applies to the same input image (variants); a list runs one batch."""
        if isinstance(image, MedicalImage):
            pixels = image.pixels
            spacing_mm = spacing_mm if spacing_mm is not None else image.plane_spacing_mm
            modality = modality or image.modality
        else:
            pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim != 2:
            raise ConfigError(f"synthesis works on one 2D image or slice, got shape {pixels.shape}")
        if not np.all(np.isfinite(pixels)):
            raise ConfigError("the image holds NaN or infinite values; synthesis needs finite pixels")
        kind = image_kind(pixels, modality)
        value_range = robust_range(pixels)
        single = isinstance(request, SynthesisRequest)
        requests = [request] if single else list(request)
        current = np.zeros(pixels.shape, bool) if lesion_mask is None else np.asarray(lesion_mask) > 0
        prepared = [self._prepare(pixels, req, current, source_mask, bank, spacing_mm, kind, value_range)
                    for req in requests]
        filled = self.backend.fill([p[0] for p in prepared])
        results = []
        for (patch, box, footprint, region, notes), out in zip(prepared, filled):
            results.append(self._paste(pixels, current, patch, box, footprint, region,
                                       np.asarray(out, np.float32), notes, kind))
        return results[0] if single else results

    def _context_fraction(self) -> float:
        """The share of an outpainting crop's side kept as context at its edge: the backend's
        `outpaint_context_fraction` (0, P1's whole crop, when it has none)."""
        return float(getattr(self.backend, "outpaint_context_fraction", 0.0))

    # -- steps --------------------------------------------------------------------------------
    def _prepare(self, pixels, req, current, source_mask, bank, spacing_mm, kind, value_range):
        if req.mode not in self.backend.modes:
            raise ConfigError(f"a {self.backend.family} model serves {', '.join(self.backend.modes)}, "
                              f"not {req.mode!r}")
        notes: dict[str, Any] = {}
        src = source_mask
        own = self.backend.shape_bank(kind) if req.mode == "inpaint" else None
        if own is not None:
            if req.mask_source.kind != "bank" or bank is not own:
                if src is not None or bank is not None:
                    notes["shape"] = (f"{self.backend.family} inserts real lesions with their own shapes; "
                                      f"the requested {req.mask_source.kind!r} shape was not used")
                index = req.mask_source.bank_index if (req.mask_source.kind == "bank" and bank is own) else None
                req = dataclasses.replace(req, mask_source=MaskSource("bank", bank_index=index,
                                                                      label=f"{self.backend.family} library"))
            bank, src = own, None
        elif req.mask_source.kind == "generator" and src is None:
            if self.shape_sampler is None:
                raise ConfigError("a 'generator' mask source needs a shape checkpoint (shape_checkpoint=...)")
            src = self.shape_sampler.sample(1, req.seed)[0]
            notes["shape_generator"] = {**dict(self.shape_sampler.identity), "shape_seed": int(req.seed)}
        plan = build_plan(req, pixels.shape, spacing_mm=spacing_mm, source_mask=src,
                          lesion_mask=current, bank=bank)
        side, scale = self.backend.patch_geometry(plan)
        if not (1.0 <= scale <= MAX_PATCH_DOWNSAMPLING + 1e-9):
            raise ConfigError(f"{self.backend.family}: patch downsampling {scale:g} outside [1, 2]")
        centre = plan.mask_crop.centre_rc
        box = square_box_around(centre, int(side))
        footprint = _footprint_in_box(plan, box)
        if req.mode == "outpaint":  # the crop's outer band (if the method keeps one) stays as context
            # every lesion in the crop is kept, not only the clicked one: its ground truth stays valid
            kept = footprint | (extract_crop(current, box) > 0)
            region = outpaint_region(kept, keep_margin_px=req.outpaint_keep_margin_px,
                                     context_fraction=self._context_fraction())
        else:
            region = footprint | _mirrored_footprint(plan, box)
        crop = extract_crop(pixels, box).astype(np.float32)
        patch_spacing = None if plan.spacing_mm is None else (plan.spacing_mm[0] * scale, plan.spacing_mm[1] * scale)
        if scale > 1.0:
            n = max(8, int(round(side / scale)))
            crop = resize_image(crop, (n, n))
            region_p, footprint_p = resize_mask(region, (n, n)), resize_mask(footprint, (n, n))
            notes["downsampled"] = f"the lesion was synthesized at {scale:.2f}× downsampling (too large for the model input at native scale)"
        else:
            region_p, footprint_p = region, footprint
        patch = Patch(pixels=crop, region=region_p, footprint=footprint_p, plan=plan, scale=float(scale),
                      spacing_mm=patch_spacing, image_kind=kind, image_range=value_range)
        return patch, box, footprint, region, notes

    def _paste(self, pixels, current, patch: Patch, box: PixelBox, footprint: np.ndarray, region: np.ndarray,
               filled: np.ndarray, notes, kind) -> SynthesisResult:
        """Write the filled patch back: `footprint` and `region` are `_prepare`'s, at native scale."""
        plan = patch.plan
        if filled.shape != patch.pixels.shape:
            raise ConfigError(f"{self.backend.family} returned a {filled.shape} patch for a {patch.pixels.shape} input")
        if not np.all(np.isfinite(filled)):
            raise ConfigError(f"{self.backend.family} produced NaN or infinite values")
        if patch.scale > 1.0:
            filled = resize_image(filled, box.shape)
        feather = float(plan.request.blending.feather_px)
        if plan.request.mode == "outpaint":
            band = context_band_px(min(box.shape), self._context_fraction())
            alpha = np.where(region, feather_weights(box.shape, feather, inset_px=band), 0.0).astype(np.float32)
        else:
            alpha = seam_alpha(footprint, feather)
        out_image = composite(pixels, filled, box, alpha)
        provenance = {
            "plan": plan.to_dict(),
            "model": self.identity,
            "family": self.backend.family,
            "learned": bool(self.backend.learned),
            "image_kind": kind,
            "patch": {"box": box.to_dict(), "scale": patch.scale, "feather_px": feather,
                      "downsampled": patch.scale > 1.0},
        }
        info = getattr(self.backend, "fill_info", None)
        if callable(info):
            provenance.update(info(patch))
        provenance.update(notes)
        return SynthesisResult(out_image, plan.paste_mask(current), provenance, plan, box)
