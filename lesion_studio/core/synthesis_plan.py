"""Synthesis requests and plans: what to synthesize, and every crop/resize/paste to do it.

A `SynthesisRequest` is the typed value a user (GUI or batch config) asks for. `build_plan`
resolves it against one image — draws what the request leaves to chance from its seed,
shapes, scales and places the mask, and computes the P0 crops — into a `SynthesisPlan`. The
synthesis engine (`core/synthesis_engine.py`) cuts the patch, runs a backend and pastes the
hole back; the GUI preview and the batch exporter run the same engine, and the plan's JSON is
part of the provenance record.

Modes:
- `inpaint`: a new lesion is generated inside the placed mask (P0 §IV-A, P3 §III-C);
- `remove`: an existing lesion is covered by a non-lesion hole filled with tissue (P0 §III-A);
- `outpaint`: the lesion is kept and its surroundings in the crop are regenerated (P1 §3.2).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.composition import outpaint_region
from lesion_studio.core.geometry.crops import (
    P0_CONTEXT_FACTOR,
    P0_MODEL_INPUT_PX,
    Box,
    PixelBox,
    component_masks,
    context_box,
    lesion_bbox,
    p0_mask_crop,
    paste_mask,
    place_footprint,
)
from lesion_studio.core.geometry.mask_transforms import P0_ROTATION_RANGE_DEG, rotate_flip_mask
from lesion_studio.core.geometry.nonlesion import removal_hole
from lesion_studio.core.geometry.shape_cleanup import clean_shape
from lesion_studio.core.geometry.size_modulation import (
    modulate_to_diameter,
    tight_crop,
    valid_spacing,
)
from lesion_studio.core.mask_bank import MaskBank

MODES = ("inpaint", "remove", "outpaint")
MASK_SOURCES = ("bank", "generator", "drawn", "existing")
PLAN_FORMAT = "lesion-studio-synthesis-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class MaskSource:
    """Where the lesion mask comes from.

    `bank`: an entry of a mask bank (`bank_index`, or drawn from the seed when None);
    `generator`: a shape-generator mask handed to `build_plan`; `drawn`: a mask painted by
    the user, handed to `build_plan`; `existing`: the annotated lesion at the request centre.
    `label` is free provenance text (bank file, generator checkpoint, file name).
    """

    kind: str
    bank_index: int | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in MASK_SOURCES:
            raise ConfigError(f"unknown mask source {self.kind!r}; expected one of {MASK_SOURCES}")


#: Seam width of every paste (pixels): only the hole and this seam around it are written.
DEFAULT_FEATHER_PX = 3.0
#: Keys of older plans' blending records that no longer exist (the paste is always hole-only).
_LEGACY_BLENDING_KEYS = ("region", "match_intensity")


@dataclass(frozen=True)
class Blending:
    """How the generated pixels go back: the hole (or, for outpaint, the regenerated
    surroundings) plus a linear seam of `feather_px` pixels; nothing else changes."""

    feather_px: float = DEFAULT_FEATHER_PX

    def __post_init__(self) -> None:
        if not (self.feather_px >= 0 and math.isfinite(self.feather_px)):
            raise ConfigError(f"feather_px must be >= 0, got {self.feather_px}")


@dataclass(frozen=True)
class SynthesisRequest:
    """One synthesis, as asked for. `None` for rotation or a flip means "draw it from the
    seed" (P0 §IV-A: U[−10°, 10°] and random flips) for bank and generator masks, and "none"
    for drawn and existing masks. Give at most one of `diameter_mm` and `diameter_px`; without
    either, bank masks keep their recorded real size and drawn masks their painted size."""

    mode: str
    centre_rc: tuple[float, float]
    mask_source: MaskSource
    diameter_mm: float | None = None
    diameter_px: float | None = None
    rotation_deg: float | None = None
    flip_vertical: bool | None = None
    flip_horizontal: bool | None = None
    seed: int = 0
    model_id: str = ""
    blending: Blending = field(default_factory=Blending)
    model_input_px: int = P0_MODEL_INPUT_PX  # recorded only: the backend sets the patch size
    context_factor: float = P0_CONTEXT_FACTOR  # P0 §III-A: 3·wm
    outpaint_keep_margin_px: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if len(self.centre_rc) != 2 or not all(math.isfinite(float(v)) for v in self.centre_rc):
            raise ConfigError(f"centre_rc must be two finite numbers, got {self.centre_rc!r}")
        object.__setattr__(self, "centre_rc", (float(self.centre_rc[0]), float(self.centre_rc[1])))
        if self.diameter_mm is not None and self.diameter_px is not None:
            raise ConfigError("give diameter_mm or diameter_px, not both")
        for name in ("diameter_mm", "diameter_px"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.mode == "remove" and self.mask_source.kind != "existing":
            raise ConfigError("remove needs mask_source kind 'existing' (the lesion to remove)")
        if self.mode == "outpaint" and self.mask_source.kind not in ("existing", "drawn"):
            raise ConfigError("outpaint keeps an 'existing' or 'drawn' lesion")
        if self.model_input_px < 8:
            raise ConfigError(f"model_input_px must be >= 8, got {self.model_input_px}")
        if self.context_factor < 1.0:
            raise ConfigError(f"context_factor must be >= 1, got {self.context_factor}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["centre_rc"] = list(self.centre_rc)
        data["seed"] = int(self.seed)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SynthesisRequest":
        try:
            values = dict(data)
            values["centre_rc"] = tuple(values["centre_rc"])
            values["mask_source"] = MaskSource(**values["mask_source"])
            blending = {k: v for k, v in dict(values.get("blending", {})).items() if k not in _LEGACY_BLENDING_KEYS}
            values["blending"] = Blending(**blending)
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a synthesis request: {exc}") from exc


def _encode_mask(mask: np.ndarray) -> dict[str, Any]:
    mask = np.asarray(mask, dtype=bool)
    bits = np.packbits(mask.ravel())
    return {"shape": list(mask.shape), "packbits_b64": base64.b64encode(bits.tobytes()).decode()}


def _decode_mask(data: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(v) for v in data["shape"])
    bits = np.frombuffer(base64.b64decode(data["packbits_b64"]), dtype=np.uint8)
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)


@dataclass(frozen=True, eq=False)
class SynthesisPlan:
    """A request resolved against one image: every random draw, the mask, and every box.

    `footprint` (bool, image pixels, top-left at `footprint_origin`) is the hole to fill
    (inpaint, remove) or the lesion to keep (outpaint). `mask_crop` is P0's Eq. 1-2 square
    around it and `context` the 3·wm crop (may reach outside the image: reflect-padded).
    """

    request: SynthesisRequest
    image_shape: tuple[int, int]
    spacing_mm: tuple[float, float] | None
    rotation_deg: float
    flip_vertical: bool
    flip_horizontal: bool
    bank_index: int | None
    diameter: float | None  # the size asked of the mask, in `diameter_unit`
    diameter_unit: str  # "mm", "px", or "" when the source size was kept
    footprint: np.ndarray
    footprint_origin: tuple[int, int]
    mask_crop: Box
    context: PixelBox
    generator_seed: int
    notes: tuple[str, ...] = ()

    # -- masks in the three frames (image, crop, model input) --------------------------------
    def footprint_image(self) -> np.ndarray:
        """The footprint as a full `(H, W)` bool mask (clipped at the image border)."""
        return place_footprint(self.image_shape, self.footprint, *self.footprint_origin)

    def crop_footprint(self) -> np.ndarray:
        """The footprint in context-crop pixels (bool, `context.shape`)."""
        r0 = self.footprint_origin[0] - self.context.row0
        c0 = self.footprint_origin[1] - self.context.col0
        return place_footprint(self.context.shape, self.footprint, r0, c0)

    def crop_generate_region(self) -> np.ndarray:
        """Crop pixels the generator produces: the hole, or all but the lesion (outpaint)."""
        fp = self.crop_footprint()
        if self.request.mode == "outpaint":
            return outpaint_region(fp, keep_margin_px=self.request.outpaint_keep_margin_px)
        return fp

    def paste_mask(self, lesion_mask: np.ndarray) -> np.ndarray:
        """The ground truth after the plan: lesion added (inpaint), erased (remove), or kept."""
        lesion_mask = np.asarray(lesion_mask, dtype=bool)
        if lesion_mask.shape != tuple(self.image_shape):
            raise MaskError(f"the plan is for a {self.image_shape} mask, got {lesion_mask.shape}")
        if self.request.mode == "outpaint":
            return lesion_mask.copy()
        box = PixelBox(*self.footprint_origin, *self.footprint.shape)
        return paste_mask(lesion_mask, self.footprint, box, remove=self.request.mode == "remove")

    # -- provenance ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "request": self.request.to_dict(),
            "image_shape": list(self.image_shape),
            "spacing_mm": None if self.spacing_mm is None else list(self.spacing_mm),
            "rotation_deg": self.rotation_deg,
            "flip_vertical": self.flip_vertical,
            "flip_horizontal": self.flip_horizontal,
            "bank_index": self.bank_index,
            "diameter": self.diameter,
            "diameter_unit": self.diameter_unit,
            "footprint": _encode_mask(self.footprint),
            "footprint_origin": list(self.footprint_origin),
            "mask_crop": self.mask_crop.to_dict(),
            "context": self.context.to_dict(),
            "generator_seed": self.generator_seed,
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SynthesisPlan":
        if data.get("format") != PLAN_FORMAT:
            raise ConfigError(f"not a synthesis plan (format {data.get('format')!r})")
        if int(data.get("version", 0)) > PLAN_VERSION:
            raise ConfigError(f"synthesis plan version {data.get('version')} is newer than this program")
        try:
            spacing = data["spacing_mm"]
            return cls(
                request=SynthesisRequest.from_dict(data["request"]),
                image_shape=(int(data["image_shape"][0]), int(data["image_shape"][1])),
                spacing_mm=None if spacing is None else (float(spacing[0]), float(spacing[1])),
                rotation_deg=float(data["rotation_deg"]),
                flip_vertical=bool(data["flip_vertical"]),
                flip_horizontal=bool(data["flip_horizontal"]),
                bank_index=None if data["bank_index"] is None else int(data["bank_index"]),
                diameter=None if data["diameter"] is None else float(data["diameter"]),
                diameter_unit=str(data["diameter_unit"]),
                footprint=_decode_mask(data["footprint"]),
                footprint_origin=(int(data["footprint_origin"][0]), int(data["footprint_origin"][1])),
                mask_crop=Box.from_dict(data["mask_crop"]),
                context=PixelBox.from_dict(data["context"]),
                generator_seed=int(data["generator_seed"]),
                notes=tuple(str(n) for n in data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a synthesis plan: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "SynthesisPlan":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"synthesis plan is not valid JSON: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SynthesisPlan):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json(indent=None))


def _existing_component(lesion_mask: np.ndarray | None, centre_rc: tuple[float, float]) -> np.ndarray:
    """The annotated lesion under (or nearest to) the centre, as a full-size bool mask."""
    if lesion_mask is None or not np.any(lesion_mask):
        raise MaskError("this request needs an annotated lesion, and the lesion mask is empty")
    components = component_masks(np.asarray(lesion_mask) > 0)
    r, c = int(math.floor(centre_rc[0])), int(math.floor(centre_rc[1]))
    for comp in components:
        if 0 <= r < comp.shape[0] and 0 <= c < comp.shape[1] and comp[r, c]:
            return comp

    def distance(comp: np.ndarray) -> float:
        cr, cc = lesion_bbox(comp).centre_rc
        return math.hypot(cr - centre_rc[0], cc - centre_rc[1])

    return min(components, key=distance)


def build_plan(
    request: SynthesisRequest,
    image_shape: tuple[int, int],
    *,
    spacing_mm: tuple[float, float] | None = None,
    source_mask: np.ndarray | None = None,
    lesion_mask: np.ndarray | None = None,
    bank: MaskBank | None = None,
) -> SynthesisPlan:
    """Resolve a request against an image of `image_shape` (and its spacing) into a plan.

    `source_mask` is the shape for `generator` and `drawn` sources; `lesion_mask` the
    image's annotation for `existing` sources; `bank` the mask bank for `bank` sources.
    Deterministic: the same inputs and seed give an identical plan.
    """
    shape = (int(image_shape[0]), int(image_shape[1]))
    if shape[0] < 1 or shape[1] < 1:
        raise ConfigError(f"invalid image shape {image_shape}")
    spacing = valid_spacing(spacing_mm)
    notes: list[str] = []
    if spacing is None:
        notes.append(f"no valid pixel spacing ({spacing_mm!r}): sizes are in pixels")
    kind = request.mask_source.kind

    # Every draw is made in a fixed order, used or not, so one field never shifts another.
    rng = np.random.default_rng(request.seed)
    drawn_index = int(rng.integers(len(bank))) if (bank is not None and len(bank)) else 0
    drawn_rotation = float(rng.uniform(*P0_ROTATION_RANGE_DEG))  # P0 §IV-A: U[−10°, 10°]
    drawn_flip_v, drawn_flip_h = (bool(b) for b in rng.integers(0, 2, size=2))  # P0 §IV-A
    generator_seed = int(rng.integers(0, 2**31 - 1))

    random_pose = kind in ("bank", "generator")
    rotation = request.rotation_deg if request.rotation_deg is not None else (
        drawn_rotation if random_pose else 0.0)
    flip_v = request.flip_vertical if request.flip_vertical is not None else (
        drawn_flip_v if random_pose else False)
    flip_h = request.flip_horizontal if request.flip_horizontal is not None else (
        drawn_flip_h if random_pose else False)

    bank_index: int | None = None
    diameter: float | None = None
    unit = ""
    if kind == "existing":
        component = _existing_component(lesion_mask, request.centre_rc)
        if np.asarray(lesion_mask).shape != shape:
            raise MaskError(f"lesion mask {np.asarray(lesion_mask).shape} differs from image {shape}")
        if request.mode == "remove":
            footprint, row0, col0 = removal_hole(component)
        else:
            box = lesion_bbox(component)
            r0, c0 = int(box.row0), int(box.col0)
            footprint = component[r0 : r0 + int(box.height), c0 : c0 + int(box.width)]
            row0, col0 = r0, c0
        rotation, flip_v, flip_h = 0.0, False, False  # an existing lesion stays as annotated
    else:
        if kind == "bank":
            if bank is None or len(bank) == 0:
                raise ConfigError("this request draws from a mask bank, and none (or an empty one) was given")
            bank_index = request.mask_source.bank_index
            if bank_index is None:
                bank_index = drawn_index
            entry = bank.get(bank_index)
            shape_mask = entry.mask
            if request.diameter_mm is None and request.diameter_px is None:
                if spacing is not None and entry.source_diameter_mm is not None:
                    diameter, unit = entry.source_diameter_mm, "mm"
                else:
                    diameter, unit = entry.source_diameter_px, "px"
                    notes.append("bank entry placed at its recorded size in pixels")
        else:
            if source_mask is None or not np.any(source_mask):
                raise MaskError(f"mask source {kind!r} needs a non-empty source_mask")
            shape_mask = tight_crop(clean_shape(np.asarray(source_mask) > 0))
            if kind == "generator" and request.diameter_mm is None and request.diameter_px is None:
                raise ConfigError("a generated shape needs diameter_mm or diameter_px (P3 §III-B)")
        if request.diameter_mm is not None:
            diameter, unit = float(request.diameter_mm), "mm"
        elif request.diameter_px is not None:
            diameter, unit = float(request.diameter_px), "px"
        posed = rotate_flip_mask(
            shape_mask, rotation_deg=rotation, flip_vertical=flip_v, flip_horizontal=flip_h
        )
        if diameter is not None:
            modulated = modulate_to_diameter(
                posed,
                diameter_mm=diameter if unit == "mm" else None,
                diameter_px=diameter if unit == "px" else None,
                spacing_mm=spacing,
            )
            footprint = modulated.mask
        else:
            footprint = tight_crop(posed)
        row0 = int(math.floor(request.centre_rc[0] - footprint.shape[0] / 2.0 + 0.5))
        col0 = int(math.floor(request.centre_rc[1] - footprint.shape[1] / 2.0 + 0.5))

    if kind != "existing":
        footprint = clean_shape(footprint)  # one component, no holes, smooth edge
    footprint = np.ascontiguousarray(footprint, dtype=bool)
    placed = Box(float(row0), float(col0), float(footprint.shape[0]), float(footprint.shape[1]))
    tight = lesion_bbox(footprint)
    lesion_box = Box(placed.row0 + tight.row0, placed.col0 + tight.col0, tight.height, tight.width)
    mask_crop = p0_mask_crop(lesion_box)  # P0 Eq. 1-2
    context = context_box(mask_crop, request.context_factor)  # P0 §III-A: 3·wm
    if not place_footprint(shape, footprint, row0, col0).any():
        raise ConfigError(f"the lesion at {request.centre_rc} falls entirely outside the {shape} image")
    return SynthesisPlan(
        request=request, image_shape=shape, spacing_mm=spacing,
        rotation_deg=float(rotation), flip_vertical=bool(flip_v), flip_horizontal=bool(flip_h),
        bank_index=bank_index, diameter=diameter, diameter_unit=unit,
        footprint=footprint, footprint_origin=(int(row0), int(col0)),
        mask_crop=mask_crop, context=context, generator_seed=generator_seed, notes=tuple(notes),
    )
