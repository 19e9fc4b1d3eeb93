"""What a synthesis backend sees and must do: the contract between the engine and a method.

The synthesis engine (`core/synthesis_engine.py`) owns every crop, resize, intensity choice,
paste and provenance record; a backend only fills a `Patch`. Learned generators (`models`)
and classical methods (`core/classical`: OpenCV fills, real-nodule insertion) implement the
same small protocol, so the GUI preview, Accept, File ▸ Export and batch export run one path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from lesion_studio.core.mask_bank import MaskBank
    from lesion_studio.core.synthesis_plan import SynthesisPlan

#: `Patch.image_kind` values: CT in Hounsfield units, or a projection radiograph (any units,
#: larger = denser, as `MedicalImage` guarantees).
IMAGE_KINDS = ("ct", "radiograph")


@dataclass(frozen=True, eq=False)
class Patch:
    """A square crop around one planned lesion, at native pixel scale unless `scale` > 1.

    `pixels` (h, w) float32 in the image's own units; `region` (h, w) bool: the pixels to
    synthesize (the hole for inpaint/remove, everything but the kept lesion for outpaint);
    `footprint` (h, w) bool: the lesion (inpaint), the removal hole (remove) or the kept
    lesion (outpaint). `scale` is image pixels per patch pixel (1.0 = native; at most 2).
    `spacing_mm` is the patch pixels' spacing (None when unknown). `image_range` is the
    whole image's robust (0.5 %, 99.5 %) value range, for backends that normalise.
    """

    pixels: np.ndarray
    region: np.ndarray
    footprint: np.ndarray
    plan: "SynthesisPlan"
    scale: float
    spacing_mm: tuple[float, float] | None
    image_kind: str
    image_range: tuple[float, float]

    @property
    def seed(self) -> int:
        """The plan's generator seed: every random draw of a backend derives from it."""
        return int(self.plan.generator_seed)


@runtime_checkable
class SynthesisBackend(Protocol):
    """One synthesis method. Attributes:

    `family` (e.g. "texture", "telea", "real-nodule"); `modes` it serves ("inpaint",
    "remove", "outpaint"); `learned` (False for classical methods that need no weights);
    `identity` (JSON-ready: checkpoint path/step/hash, or the classical method and its
    parameters) recorded in every provenance record.
    """

    family: str
    modes: tuple[str, ...]
    learned: bool
    identity: dict[str, Any]

    def patch_geometry(self, plan: "SynthesisPlan") -> tuple[int, float]:
        """`(side_px, scale)`: the square crop's side in image pixels and the downsampling
        factor (>= 1, at most 2) applied before `fill`. Raise `ConfigError` when the lesion
        cannot be served (e.g. too large for a fixed model input even at 2×)."""

    def shape_bank(self, image_kind: str) -> "MaskBank | None":
        """The backend's own lesion shapes, or None. A backend that inserts real lesions
        returns their masks; the engine then plans every inpaint request from this bank (the
        shape must match the inserted pixels), drawing index, rotation and flips from the seed."""

    def fill(self, patches: Sequence[Patch]) -> list[np.ndarray]:
        """The filled patches, each the shape of `patch.pixels`, float32, image units.
        Only `region` (and a few pixels of seam around it) is used by the engine."""
