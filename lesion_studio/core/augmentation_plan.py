"""P0 §IV-A augmentation plans: where to add, replace or remove lesions in one real image.

Lesion-free image: 1-3 targets drawn from the image's location map, each a bank mask
(rotated U[−10°, 10°], flipped) inpainted there. Lesion image: every annotated lesion is
either replaced by a new lesion or removed with a non-lesion hole; removal only happens when
the image has several lesions, and at least one lesion always stays, so a positive image stays
positive. A replacement is planned as "remove the old lesion, then inpaint the new one at its
centre", so the ground truth stays exact when the new lesion is smaller than the old one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.crops import P0_MODEL_INPUT_PX, component_masks, lesion_bbox
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.synthesis_plan import (
    Blending,
    MaskSource,
    SynthesisPlan,
    SynthesisRequest,
    build_plan,
)

#: P0 §IV-A: 1 to 3 new target locations per lesion-free image.
P0_TARGETS_PER_IMAGE = (1, 3)
#: P0 §IV-A: 10 synthetic images per real image.
P0_VARIANTS_PER_IMAGE = 10
#: Where P0 is silent: a lesion of a multi-lesion image is removed with probability 0.5.
REMOVE_PROBABILITY = 0.5
#: New targets keep this many pixels away from lesions already there or planned.
TARGET_SEPARATION_PX = 3
#: Centres tried per target before giving up on it (a crowded location map).
MAX_PLACEMENT_TRIES = 20

AUGMENTATION_FORMAT = "lesion-studio-augmentation-plan"
AUGMENTATION_VERSION = 1


@dataclass(frozen=True, eq=False)
class AugmentationPlan:
    """The ordered synthesis steps that turn one real image into one synthetic image."""

    seed: int
    image_shape: tuple[int, int]
    image_kind: str  # "lesion-free" or "lesion"
    steps: tuple[SynthesisPlan, ...] = field(default_factory=tuple)

    def apply_to_mask(self, lesion_mask: np.ndarray) -> np.ndarray:
        """The ground truth after every step, in order."""
        mask = np.asarray(lesion_mask, dtype=bool).copy()
        for step in self.steps:
            mask = step.paste_mask(mask)
        return mask

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": AUGMENTATION_FORMAT, "version": AUGMENTATION_VERSION,
            "seed": self.seed, "image_shape": list(self.image_shape),
            "image_kind": self.image_kind, "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AugmentationPlan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"augmentation plan is not valid JSON: {exc}") from exc
        if data.get("format") != AUGMENTATION_FORMAT:
            raise ConfigError(f"not an augmentation plan (format {data.get('format')!r})")
        return cls(
            seed=int(data["seed"]),
            image_shape=(int(data["image_shape"][0]), int(data["image_shape"][1])),
            image_kind=str(data["image_kind"]),
            steps=tuple(SynthesisPlan.from_dict(s) for s in data["steps"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AugmentationPlan):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json(indent=None))


def sample_location(
    rng: np.random.Generator, location_map: np.ndarray, *, exclude: np.ndarray | None = None
) -> tuple[float, float]:
    """A pixel centre `(row + 0.5, col + 0.5)` drawn with probability ∝ the map's value.

    A binary map draws uniformly over its True pixels; `exclude` (bool) removes pixels.
    MaskError when no pixel is left.
    """
    weights = np.asarray(location_map, dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise MaskError("the location map must hold finite, non-negative values")
    if exclude is not None:
        weights = np.where(np.asarray(exclude, dtype=bool), 0.0, weights)
    total = weights.sum()
    if total <= 0:
        raise MaskError("the location map leaves no place for a lesion")
    flat = np.flatnonzero(weights)
    p = weights.ravel()[flat] / total
    index = int(flat[int(rng.choice(len(flat), p=p))])
    row, col = divmod(index, weights.shape[1])
    return (row + 0.5, col + 0.5)


def _child_seeds(seed: int, n: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def plan_augmentation(
    image_shape: tuple[int, int],
    *,
    lesion_mask: np.ndarray | None,
    location_map: np.ndarray | None,
    bank: MaskBank,
    seed: int,
    spacing_mm: tuple[float, float] | None = None,
    diameters_mm: Sequence[float] | None = None,
    diameters_px: Sequence[float] | None = None,
    targets_per_image: tuple[int, int] = P0_TARGETS_PER_IMAGE,
    remove_probability: float = REMOVE_PROBABILITY,
    model_id: str = "",
    model_input_px: int = P0_MODEL_INPUT_PX,
    blending: Blending = Blending(),
) -> AugmentationPlan:
    """Plan one synthetic image from one real image (P0 §IV-A), deterministic in `seed`.

    New lesion sizes are drawn uniformly from `diameters_mm` or `diameters_px` when given
    (P3 §III-D draws sizes uniformly from an array of diameters); otherwise each bank mask
    keeps its recorded real size.
    """
    shape = (int(image_shape[0]), int(image_shape[1]))
    if diameters_mm is not None and diameters_px is not None:
        raise ConfigError("give diameters_mm or diameters_px, not both")
    if not 0.0 <= remove_probability <= 1.0:
        raise ConfigError(f"remove_probability must be in [0, 1], got {remove_probability}")
    lesion = np.zeros(shape, bool) if lesion_mask is None else np.asarray(lesion_mask) > 0
    if lesion.shape != shape:
        raise MaskError(f"lesion mask {lesion.shape} differs from the image {shape}")
    rng = np.random.default_rng(np.random.SeedSequence(seed))

    def request(mode: str, centre: tuple[float, float], source: MaskSource, step_seed: int) -> SynthesisRequest:
        d_mm = d_px = None
        if mode == "inpaint" and diameters_mm is not None:
            d_mm = float(diameters_mm[int(rng.integers(len(diameters_mm)))])  # P3 §III-D
        elif mode == "inpaint" and diameters_px is not None:
            d_px = float(diameters_px[int(rng.integers(len(diameters_px)))])  # P3 §III-D
        return SynthesisRequest(
            mode=mode, centre_rc=centre, mask_source=source, diameter_mm=d_mm, diameter_px=d_px,
            seed=step_seed, model_id=model_id, model_input_px=model_input_px, blending=blending,
        )

    steps: list[SynthesisPlan] = []
    current = lesion.copy()
    if not lesion.any():
        if location_map is None:
            raise MaskError("a lesion-free image needs a location map to place new lesions")
        if np.asarray(location_map).shape != shape:
            raise MaskError(f"location map {np.asarray(location_map).shape} differs from the image {shape}")
        low, high = targets_per_image
        n_targets = int(rng.integers(low, high + 1))  # P0 §IV-A: 1-3 targets
        seeds = _child_seeds(seed, n_targets)
        occupied = np.zeros(shape, bool)
        near_occupied = occupied
        for k in range(n_targets):
            plan = None
            for _ in range(MAX_PLACEMENT_TRIES):
                try:
                    centre = sample_location(rng, location_map, exclude=occupied)
                except MaskError:
                    break  # the map is full: fewer targets rather than overlapping lesions
                candidate = build_plan(request("inpaint", centre, MaskSource("bank"), seeds[k]),
                                       shape, spacing_mm=spacing_mm, bank=bank)
                if not np.any(candidate.footprint_image() & near_occupied):
                    plan = candidate
                    break
            if plan is None:
                break
            steps.append(plan)
            occupied |= plan.footprint_image()
            near_occupied = ndimage.distance_transform_edt(~occupied) <= TARGET_SEPARATION_PX
        return AugmentationPlan(seed=int(seed), image_shape=shape, image_kind="lesion-free", steps=tuple(steps))

    components = component_masks(lesion)
    actions = ["replace"] * len(components)
    if len(components) > 1:  # P0 §IV-A: removal only when the image has several lesions
        actions = ["remove" if rng.random() < remove_probability else "replace" for _ in components]
        if all(a == "remove" for a in actions):
            actions[int(rng.integers(len(actions)))] = "replace"
    seeds = _child_seeds(seed, 2 * len(components))
    for k, (component, action) in enumerate(zip(components, actions)):
        centre = lesion_bbox(component).centre_rc
        r, c = int(centre[0]), int(centre[1])
        if not component[r, c]:  # e.g. a ring: aim at one of its own pixels
            rows, cols = np.nonzero(component)
            r, c = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
        anchor = (r + 0.5, c + 0.5)
        removal = build_plan(request("remove", anchor, MaskSource("existing"), seeds[2 * k]), shape,
                             spacing_mm=spacing_mm, lesion_mask=current)
        steps.append(removal)
        current = removal.paste_mask(current)
        if action == "replace":
            new = build_plan(request("inpaint", centre, MaskSource("bank"), seeds[2 * k + 1]), shape,
                             spacing_mm=spacing_mm, bank=bank)
            steps.append(new)
            current = new.paste_mask(current)
    return AugmentationPlan(seed=int(seed), image_shape=shape, image_kind="lesion", steps=tuple(steps))


def plan_augmentations(
    image_shape: tuple[int, int],
    *,
    n_variants: int = P0_VARIANTS_PER_IMAGE,
    seed: int,
    **kwargs: Any,
) -> list[AugmentationPlan]:
    """`n_variants` independent plans for one real image (P0 §IV-A makes 10 per image)."""
    return [plan_augmentation(image_shape, seed=s, **kwargs) for s in _child_seeds(seed, n_variants)]
