"""Which units an image is in, and how a model's value range maps onto it.

A learned model records the value range of its training data (its checkpoint's
`normalization`). An image in the same units (phantom units, HU) is mapped with that range;
an image in other units (an 8-bit PNG, a 12/16-bit CR, HU for a model trained on PNGs) is
mapped with its own robust range instead. The choice is made here, once, and recorded in
provenance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesion_studio.core.errors import ConfigError

INTENSITY_POLICIES = ("auto", "checkpoint", "image")
#: Percentiles of the robust range (a few hot or dead pixels do not set the scale).
ROBUST_PERCENTILES = (0.5, 99.5)
#: `auto` keeps the checkpoint's range when the two ranges overlap at least this much
#: (intersection over union of the intervals).
RANGE_OVERLAP_FOR_CHECKPOINT = 0.5
#: Below this value an image is taken as CT in HU (air is -1000 HU; no radiograph unit
#: system used here goes negative).
CT_AIR_THRESHOLD_HU = -500.0


def robust_range(pixels: np.ndarray) -> tuple[float, float]:
    """The image's (0.5 %, 99.5 %) percentiles over finite pixels; `hi > lo` always."""
    values = np.asarray(pixels, dtype=np.float32).ravel()
    values = values[:: max(1, values.size // 200_000)]
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ConfigError("the image has no finite pixel values")
    lo, hi = np.percentile(values, ROBUST_PERCENTILES)
    return float(lo), float(max(hi, lo + 1e-6))


def image_kind(pixels: np.ndarray, modality: str | None = None) -> str:
    """"ct" for CT in HU (by modality, else by air-valued pixels), otherwise "radiograph"."""
    if modality:
        if modality.upper() == "CT":
            return "ct"
        if modality.upper() in ("CR", "DX", "MG", "RF", "XA", "PX"):
            return "radiograph"
    lo, _ = robust_range(pixels)
    return "ct" if lo < CT_AIR_THRESHOLD_HU else "radiograph"


def range_overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two intervals (0 when disjoint)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class IntensityMapping:
    """`[lo, hi]` in image units maps to the model's [-1, 1]; `source` says why."""

    lo: float
    hi: float
    source: str  # "checkpoint" or "image"
    image_range: tuple[float, float]
    model_range: tuple[float, float]

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "source": self.source,
                "image_range": list(self.image_range), "model_range": list(self.model_range)}


def choose_mapping(
    pixels: np.ndarray, model_range: tuple[float, float], policy: str = "auto"
) -> IntensityMapping:
    """Pick the range that maps this image into a model trained on `model_range`.

    "checkpoint": the training range; "image": the image's own robust range; "auto": the
    training range when the image's robust range overlaps it (IoU >= 0.5), else the image's.
    """
    return mapping_for_range(robust_range(pixels), model_range, policy)


def mapping_for_range(
    image_range: tuple[float, float], model_range: tuple[float, float], policy: str = "auto"
) -> IntensityMapping:
    """`choose_mapping` for an image whose robust range is already known."""
    if policy not in INTENSITY_POLICIES:
        raise ConfigError(f"intensity must be one of {INTENSITY_POLICIES}, got {policy!r}")
    image_range = (float(image_range[0]), float(image_range[1]))
    model_range = (float(model_range[0]), float(model_range[1]))
    use_checkpoint = policy == "checkpoint" or (
        policy == "auto" and range_overlap(image_range, model_range) >= RANGE_OVERLAP_FOR_CHECKPOINT)
    lo, hi = model_range if use_checkpoint else image_range
    return IntensityMapping(lo, hi, "checkpoint" if use_checkpoint else "image", image_range, model_range)
