"""One case of a reader study: a real, synthetic or lesion-free patch and its answer-key record.

Every class goes through the same crop (`field_of_view_mm` at native resolution, the lesion
offset from the centre by a uniform jitter, shifted to lie inside the image) and the same
`render_crop` (float32, rounded to whole units when the source is integer-valued, clipped to
the source image's range), so nothing but the lesion itself tells the classes apart.

- `make_real_case`: a real lesion, with no other lesion in the crop;
- `make_matched_site_case`: the realism benchmark's design (`benchmarks/realism.py`) — a real
  lesion is removed (`auto-fill` by default) and a synthetic lesion of its diameter is inserted
  at its centroid: same site, size and image type as a real case;
- `make_free_site_case`: a synthetic lesion inserted into lesion-free tissue;
- `make_lesion_free_case`: tissue with no lesion (the "lesion present?" question).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.reader_study.config import StudyConfig
from lesion_studio.core.reader_study.sources import SourceImage, SourceLesion
from lesion_studio.core.synthesis_engine import SynthesisEngine
from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

#: Draws of the crop jitter before a lesion is given up (another lesion keeps falling in the crop).
CROP_TRIES = 8
#: Lesion-free crops keep this many pixels away from every lesion.
LESION_FREE_MARGIN_PX = 2


@dataclass
class StudyCase:
    """One patch with its truth, before it gets its case id (reading order)."""

    pixels: np.ndarray  # (H, W) float32, native units
    spacing_mm: tuple[float, float]
    truth: str  # "real" / "synthetic" / "lesion-free"
    model: str | None
    diameter_mm: float | None
    size_bin: str | None
    image_type: str
    source: str
    group: str
    request: dict[str, Any] | None = None
    provenance_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def key_entry(self) -> dict[str, Any]:
        """The case's answer-key record."""
        return {"truth": self.truth, "model": self.model,
                "diameter_mm": None if self.diameter_mm is None else round(float(self.diameter_mm), 3),
                "size_bin": self.size_bin, "image_type": self.image_type, "source": self.source,
                "group": self.group, "request": self.request, "provenance_sha256": self.provenance_sha256,
                **self.extra}


# -- engines -----------------------------------------------------------------------------------
def classical_engine(name: str) -> SynthesisEngine:
    """A classical synthesis engine by family name (no weights, no torch)."""
    from lesion_studio.core.classical.backends import CLASSICAL_FAMILIES, classical_backend

    if name not in CLASSICAL_FAMILIES:
        raise ConfigError(f"{name!r} is not a classical method ({', '.join(CLASSICAL_FAMILIES)}); learned "
                          "checkpoints need an engine factory (models.inference.load_synthesizer)")
    return SynthesisEngine(classical_backend(name))


def model_label(model: str) -> str:
    """The name a model goes by in the key and the analysis: a family name or a checkpoint stem."""
    return Path(model).name if ("/" in model or os.sep in model) else model


def crop_shape(spacing_mm: tuple[float, float], fov_mm: float) -> tuple[int, int]:
    """Pixels of a `fov_mm` square at this spacing (native resolution)."""
    return (max(2, int(round(fov_mm / spacing_mm[0]))), max(2, int(round(fov_mm / spacing_mm[1]))))


# -- crops -------------------------------------------------------------------------------------
def _crop_box(centre_rc: tuple[float, float], shape: tuple[int, int], image_shape: tuple[int, ...]) -> tuple[int, int]:
    """Top-left corner of a `shape` crop centred on `centre_rc`, shifted to lie inside the image."""
    r0 = int(round(centre_rc[0] - (shape[0] - 1) / 2.0))
    c0 = int(round(centre_rc[1] - (shape[1] - 1) / 2.0))
    return (int(np.clip(r0, 0, image_shape[0] - shape[0])), int(np.clip(c0, 0, image_shape[1] - shape[1])))


def _jittered_crop(centre_rc: tuple[float, float], image: SourceImage, avoid: np.ndarray | None,
                   config: StudyConfig, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
    """`(r0, c0, h, w)` of a jittered crop holding no `avoid` pixel, or None."""
    shape = crop_shape(image.spacing_mm, config.field_of_view_mm)
    if shape[0] > image.pixels.shape[0] or shape[1] > image.pixels.shape[1]:
        return None
    jitter = (config.jitter_mm / image.spacing_mm[0], config.jitter_mm / image.spacing_mm[1])
    for _ in range(CROP_TRIES):
        d = rng.uniform(-1.0, 1.0, size=2) * np.asarray(jitter)
        r0, c0 = _crop_box((centre_rc[0] + d[0], centre_rc[1] + d[1]), shape, image.pixels.shape)
        if avoid is None or not avoid[r0 : r0 + shape[0], c0 : c0 + shape[1]].any():
            return r0, c0, shape[0], shape[1]
    return None


def render_crop(pixels: np.ndarray, box: tuple[int, int, int, int], source: SourceImage,
                quantum: float) -> np.ndarray:
    """The patch as readers get it: float32, rounded to `quantum` (0: not), clipped to the
    source image's own range — the same for every class."""
    r0, c0, h, w = box
    crop = np.asarray(pixels[r0 : r0 + h, c0 : c0 + w], dtype=np.float64)
    if quantum > 0:
        crop = np.round(crop / quantum) * quantum
    lo, hi = float(source.pixels.min()), float(source.pixels.max())
    return np.ascontiguousarray(np.clip(crop, lo, hi), dtype="<f4")


def _sha256_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _modality(image: SourceImage) -> str | None:
    return "CT" if image.image_type == "ct" else (image.modality or None)


# -- cases -------------------------------------------------------------------------------------
def make_real_case(lesion: SourceLesion, size_bin: str, config: StudyConfig, rng: np.random.Generator,
                   quantum: float) -> StudyCase | None:
    """A crop around a real lesion (no other lesion in it), or None."""
    image = lesion.image
    others = image.lesion_mask & ~lesion.mask()
    box = _jittered_crop(lesion.centroid_rc, image, others, config, rng)
    if box is None:
        return None
    return StudyCase(pixels=render_crop(image.pixels, box, image, quantum), spacing_mm=image.spacing_mm,
                     truth="real", model=None, diameter_mm=lesion.diameter_mm, size_bin=size_bin,
                     image_type=image.image_type, source=lesion.label, group=image.group,
                     extra={"crop_box": list(box)})


def _insert(engine: SynthesisEngine, pixels: np.ndarray, image: SourceImage, centre_rc: tuple[float, float],
            diameter_mm: float, seed: int, model: str, current: np.ndarray, shape_mask: np.ndarray | None):
    """Insert one lesion with `engine`: its own library shapes (real-nodule), else `shape_mask`
    (drawn) or a bundled nodule shape."""
    own = engine.own_bank(image.image_type)
    source, bank = None, None
    if own is not None:
        kind, bank = "bank", own
    elif shape_mask is not None:
        kind, source = "drawn", shape_mask
    else:
        from lesion_studio.core.classical.nodule_library import bundled_library

        kind = "bank"
        bank = bundled_library().shape_bank("axial" if image.image_type == "ct" else "projected")
    request = SynthesisRequest(mode="inpaint", centre_rc=centre_rc, mask_source=MaskSource(kind),
                               diameter_mm=float(diameter_mm), seed=int(seed), model_id=model_label(model))
    return engine(pixels, request, lesion_mask=current, source_mask=source, bank=bank,
                  spacing_mm=image.spacing_mm, modality=_modality(image))


def make_matched_site_case(host: SourceLesion, size_bin: str, model: str, engine: SynthesisEngine,
                           removal: SynthesisEngine, config: StudyConfig, rng: np.random.Generator,
                           quantum: float) -> StudyCase | None:
    """Remove `host` (a real lesion of the synthetic side), insert a `model` lesion of its
    diameter at its centroid and crop around it; None when a step is refused."""
    image = host.image
    own = host.mask()
    others = image.lesion_mask & ~own
    seed = int(rng.integers(0, 2**31 - 1))
    remove = SynthesisRequest(mode="remove", centre_rc=host.centroid_rc, mask_source=MaskSource("existing"))
    try:
        removed = removal(image.pixels, remove, lesion_mask=own, spacing_mm=image.spacing_mm,
                          modality=_modality(image))
        inserted = _insert(engine, removed.image, image, host.centroid_rc, host.diameter_mm, seed, model,
                           others, host.box_mask)
    except (ConfigError, MaskError):
        return None
    footprint = inserted.plan.footprint_image()
    if not footprint.any():
        return None
    rows, cols = np.nonzero(footprint)
    box = _jittered_crop((float(rows.mean()), float(cols.mean())), image, others, config, rng)
    if box is None:
        return None
    provenance = {"source": host.label, "removal": removed.provenance, "insertion": inserted.provenance,
                  "crop_box": list(box)}
    return StudyCase(
        pixels=render_crop(inserted.image, box, image, quantum), spacing_mm=image.spacing_mm, truth="synthetic",
        model=model_label(model), diameter_mm=moment_diameter(footprint, image.spacing_mm), size_bin=size_bin,
        image_type=image.image_type, source=host.label, group=image.group,
        request={"placement": "matched-site", "removal": removed.plan.request.to_dict(),
                 "removal_method": removal.family, "insertion": inserted.plan.request.to_dict()},
        provenance_sha256=_sha256_json(provenance),
        extra={"crop_box": list(box), "requested_diameter_mm": round(float(host.diameter_mm), 3)})


def _free_positions(image: SourceImage, shape: tuple[int, int], margin_px: int) -> np.ndarray:
    """`(K, 2)` top-left corners of `shape` crops that hold no lesion pixel (grown by `margin_px`)."""
    blocked = image.lesion_mask
    if margin_px > 0 and blocked.any():
        blocked = ndimage.binary_dilation(blocked, iterations=margin_px)
    h, w = shape
    H, W = blocked.shape
    if h > H or w > W:
        return np.zeros((0, 2), dtype=int)
    integral = np.pad(blocked.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]
    return np.argwhere(sums == 0)


def _free_crop(image: SourceImage, config: StudyConfig, rng: np.random.Generator,
               tissue: tuple[float, float] | None, tries: int = 20) -> tuple[int, int, int, int] | None:
    """A lesion-free crop (location map at its centre when there is one, tissue-like median)."""
    shape = crop_shape(image.spacing_mm, config.field_of_view_mm)
    corners = _free_positions(image, shape, LESION_FREE_MARGIN_PX)
    if len(corners) and image.location_map is not None:
        centres = corners + (np.asarray(shape) - 1) // 2
        corners = corners[image.location_map[centres[:, 0], centres[:, 1]]]
    for _ in range(min(tries, len(corners))):
        r0, c0 = (int(v) for v in corners[int(rng.integers(len(corners)))])
        box = (r0, c0, shape[0], shape[1])
        median = float(np.median(image.pixels[r0 : r0 + shape[0], c0 : c0 + shape[1]]))
        if tissue is None or tissue[0] <= median <= tissue[1]:
            return box
    return None


def make_lesion_free_case(image: SourceImage, config: StudyConfig, rng: np.random.Generator, quantum: float,
                          tissue: tuple[float, float] | None) -> StudyCase | None:
    """A crop of real tissue with no lesion in it, or None."""
    box = _free_crop(image, config, rng, tissue)
    if box is None:
        return None
    return StudyCase(pixels=render_crop(image.pixels, box, image, quantum), spacing_mm=image.spacing_mm,
                     truth="lesion-free", model=None, diameter_mm=None, size_bin=None,
                     image_type=image.image_type, source=image.source, group=image.group,
                     extra={"crop_box": list(box)})


def make_free_site_case(image: SourceImage, diameter_mm: float, size_bin: str, model: str,
                        engine: SynthesisEngine, config: StudyConfig, rng: np.random.Generator, quantum: float,
                        tissue: tuple[float, float] | None) -> StudyCase | None:
    """Insert a `model` lesion of `diameter_mm` into lesion-free tissue of `image` and crop
    around it (lesion offset drawn like the real cases' jitter); None when refused."""
    box = _free_crop(image, config, rng, tissue)
    if box is None:
        return None
    r0, c0, h, w = box
    jitter = np.asarray((config.jitter_mm / image.spacing_mm[0], config.jitter_mm / image.spacing_mm[1]))
    d = rng.uniform(-1.0, 1.0, size=2) * jitter
    centre = (r0 + (h - 1) / 2.0 - d[0], c0 + (w - 1) / 2.0 - d[1])
    seed = int(rng.integers(0, 2**31 - 1))
    try:
        inserted = _insert(engine, image.pixels, image, centre, diameter_mm, seed, model, image.lesion_mask, None)
    except (ConfigError, MaskError):
        return None
    footprint = inserted.plan.footprint_image()
    if not footprint[r0 : r0 + h, c0 : c0 + w].any():
        return None
    provenance = {"source": image.source, "insertion": inserted.provenance, "crop_box": list(box)}
    return StudyCase(
        pixels=render_crop(inserted.image, box, image, quantum), spacing_mm=image.spacing_mm, truth="synthetic",
        model=model_label(model), diameter_mm=moment_diameter(footprint, image.spacing_mm), size_bin=size_bin,
        image_type=image.image_type, source=image.source, group=image.group,
        request={"placement": "lesion-free", "insertion": inserted.plan.request.to_dict()},
        provenance_sha256=_sha256_json(provenance),
        extra={"crop_box": list(box), "requested_diameter_mm": round(float(diameter_mm), 3)})
