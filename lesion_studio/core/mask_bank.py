"""Mask bank: real lesion shapes, normalized as P3 does, stored in one `.npz`, sampled with
P0's augmentation.

Every connected component of every input mask becomes one entry: scaled to `d_init = 100 px`
on the 256² size-modulation canvas and stored at 128² (P3 §IV-A). The entry keeps its
original diameter (in pixels, and in mm when the source had a spacing) so that synthesis can
reuse real lesion sizes (P0 §IV-A places real cropped stones at their own size).

Entries are clean shapes (`clean_shape`: one component, no holes, smooth outline): holes are
filled before measuring and normalizing, the normalized entry is cleaned, banks written before
version 2 are cleaned on load, and rotated draws are made whole again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.crops import component_masks
from lesion_studio.core.geometry.mask_transforms import P0_ROTATION_RANGE_DEG, rotate_flip_mask
from lesion_studio.core.geometry.shape_cleanup import clean_shape, fill_holes, is_clean
from lesion_studio.core.geometry.size_modulation import (
    P3_PATCH_PX,
    P3_SHAPE_PX,
    P3_TRAINING_D_INIT_PX,
    moment_diameter,
    normalize_training_mask,
    valid_spacing,
)

BANK_FORMAT = "lesion-studio-mask-bank"
#: Version 2: every entry is a clean shape. Older banks are cleaned when loaded.
BANK_VERSION = 2
#: Components smaller than this carry no usable shape (a few pixels of annotation noise).
MIN_COMPONENT_AREA_PX = 4


@dataclass(frozen=True)
class SampledMask:
    """One draw from the bank: the augmented 128² mask and how it was made."""

    mask: np.ndarray  # (S, S) bool, normalized shape after flips and rotation
    index: int
    rotation_deg: float
    flip_vertical: bool
    flip_horizontal: bool
    source_diameter_px: float
    source_diameter_mm: float | None


@dataclass(frozen=True, eq=False)
class MaskBank:
    """Normalized lesion shapes `(N, S, S)` bool with their original sizes and sources."""

    masks: np.ndarray
    diameters_px: np.ndarray  # (N,) float64, moment diameter in the source image's pixels
    diameters_mm: np.ndarray  # (N,) float64, NaN where the source had no valid spacing
    sources: tuple[str, ...]
    d_init_px: float = P3_TRAINING_D_INIT_PX
    patch_px: int = P3_PATCH_PX

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise MaskError(f"bank masks must be (N, S, S) bool, got {self.masks.shape} {self.masks.dtype}")
        if len(self.diameters_px) != n or len(self.diameters_mm) != n or len(self.sources) != n:
            raise MaskError("bank arrays disagree in length")

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def shape_px(self) -> int:
        return int(self.masks.shape[1]) if len(self) else P3_SHAPE_PX

    @classmethod
    def from_masks(
        cls,
        masks: Sequence[np.ndarray],
        *,
        spacings_mm: Sequence[tuple[float, float] | None] | None = None,
        sources: Sequence[str] | None = None,
        min_area_px: int = MIN_COMPONENT_AREA_PX,
        out_px: int = P3_SHAPE_PX,
    ) -> "MaskBank":
        """Build a bank from any binary masks: every 8-connected component is one entry.

        A component's holes are filled before it is measured and normalized, and the
        normalized entry goes through `clean_shape`, so every entry is one solid shape.
        """
        entries: list[np.ndarray] = []
        d_px: list[float] = []
        d_mm: list[float] = []
        names: list[str] = []
        for i, mask in enumerate(masks):
            mask = np.asarray(mask)
            if mask.ndim != 2:
                raise MaskError(f"mask {i} is not 2D (shape {mask.shape})")
            spacing = valid_spacing(spacings_mm[i]) if spacings_mm is not None else None
            name = sources[i] if sources is not None else f"mask{i}"
            for k, component in enumerate(component_masks(mask > 0)):
                if int(component.sum()) < min_area_px:
                    continue
                component = fill_holes(component)
                entries.append(clean_shape(normalize_training_mask(component, out_px=out_px)))
                d_px.append(moment_diameter(component))
                d_mm.append(moment_diameter(component, spacing) if spacing else float("nan"))
                names.append(f"{name}#{k}")
        stack = (
            np.stack(entries).astype(bool) if entries else np.zeros((0, out_px, out_px), bool)
        )
        return cls(
            masks=stack,
            diameters_px=np.asarray(d_px, dtype=np.float64),
            diameters_mm=np.asarray(d_mm, dtype=np.float64),
            sources=tuple(names),
        )

    def save(self, path: str | Path) -> Path:
        """Write the bank as one compressed `.npz` of plain arrays (no pickles)."""
        path = Path(path)
        meta = {
            "format": BANK_FORMAT, "version": BANK_VERSION,
            "d_init_px": self.d_init_px, "patch_px": self.patch_px,
        }
        try:
            with open(path, "wb") as fh:
                np.savez_compressed(
                    fh,
                    masks=self.masks.astype(np.uint8),
                    diameters_px=self.diameters_px,
                    diameters_mm=self.diameters_mm,
                    sources=np.asarray(self.sources, dtype=np.str_),
                    meta=np.asarray(json.dumps(meta, sort_keys=True)),
                )
        except OSError as exc:
            raise MaskError(f"cannot write the mask bank: {exc}", path) from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MaskBank":
        """Read a bank written by `save`; MaskError with the path for anything else."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = {"masks", "diameters_px", "diameters_mm", "sources", "meta"} - set(data.files)
                if missing:
                    raise MaskError(f"not a mask bank: missing {sorted(missing)}", path)
                meta = json.loads(str(data["meta"]))
                masks = data["masks"]
                d_px = data["diameters_px"].astype(np.float64)
                d_mm = data["diameters_mm"].astype(np.float64)
                sources = tuple(str(s) for s in data["sources"])
        except MaskError:
            raise
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise MaskError(f"cannot read the mask bank: {exc}", path) from exc
        if meta.get("format") != BANK_FORMAT:
            raise MaskError(f"not a mask bank (format {meta.get('format')!r})", path)
        if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
            raise MaskError(f"bank masks must be (N, S, S), got {masks.shape}", path)
        masks = masks > 0
        if int(meta.get("version", 1)) < 2 or not all(is_clean(m) for m in masks):
            masks = _cleaned(masks)  # banks from before clean shapes, or edited by hand
        return cls(
            masks=masks, diameters_px=d_px, diameters_mm=d_mm, sources=sources,
            d_init_px=float(meta.get("d_init_px", P3_TRAINING_D_INIT_PX)),
            patch_px=int(meta.get("patch_px", P3_PATCH_PX)),
        )

    def get(
        self,
        index: int,
        *,
        rotation_deg: float = 0.0,
        flip_vertical: bool = False,
        flip_horizontal: bool = False,
    ) -> SampledMask:
        """Entry `index` with the given flips and rotation (same canvas size as stored).

        A rotated entry goes through `clean_shape` without smoothing (the rotation already
        resamples the outline as a coverage map), so a draw is always one solid shape.
        """
        if not 0 <= index < len(self):
            raise MaskError(f"mask bank index {index} out of range (bank has {len(self)})")
        mask = rotate_flip_mask(
            self.masks[index], rotation_deg=rotation_deg, flip_vertical=flip_vertical,
            flip_horizontal=flip_horizontal, expand=False,
        )
        if rotation_deg != 0 and mask.any():  # rotation resamples: keep the draw one solid shape
            mask = clean_shape(mask, smooth_px=0)
        d_mm = float(self.diameters_mm[index])
        return SampledMask(
            mask=mask, index=int(index), rotation_deg=float(rotation_deg),
            flip_vertical=bool(flip_vertical), flip_horizontal=bool(flip_horizontal),
            source_diameter_px=float(self.diameters_px[index]),
            source_diameter_mm=None if np.isnan(d_mm) else d_mm,
        )

    def sample(
        self,
        rng: np.random.Generator,
        *,
        augment: bool = True,
        rotation_range_deg: tuple[float, float] = P0_ROTATION_RANGE_DEG,
    ) -> SampledMask:
        """A uniformly drawn entry, rotated U[−10°, 10°] and flipped at random (P0 §IV-A)."""
        if len(self) == 0:
            raise MaskError("the mask bank is empty")
        index = int(rng.integers(len(self)))
        if not augment:
            return self.get(index)
        rotation = float(rng.uniform(*rotation_range_deg))  # P0 §IV-A: U[−10°, 10°]
        flip_v, flip_h = (bool(b) for b in rng.integers(0, 2, size=2))  # P0 §IV-A flips
        return self.get(index, rotation_deg=rotation, flip_vertical=flip_v, flip_horizontal=flip_h)


def _cleaned(masks: np.ndarray) -> np.ndarray:
    """`clean_shape` of every non-empty entry of an `(N, S, S)` stack (empty ones stay empty)."""
    out = masks.copy()
    for i, mask in enumerate(masks):
        if mask.any():
            out[i] = clean_shape(mask)
    return out
