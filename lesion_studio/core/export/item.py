"""`ExportItem`: one synthetic image and its label mask, ready for every writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: nnU-Net / COCO label of a lesion pixel (background is 0).
LESION_LABEL = 1


@dataclass(frozen=True, eq=False)
class ExportItem:
    """`image` `(H, W)` float32 in the source's units (HU for CT); `mask` `(H, W)` uint8
    labels (0 background, 1 lesion); `geometry` is SimpleITK's `(spacing_xyz, origin_xyz,
    direction)` of the source image; `spacing_mm` is `(row_mm, col_mm)` or None."""

    item_id: str
    image: np.ndarray
    mask: np.ndarray
    geometry: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]
    spacing_mm: tuple[float, float] | None
    modality: str
    png_offset: int = 0  # PNG value = round(image) + png_offset, clipped to 0..65535
    model_description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def png_image(self) -> np.ndarray:
        """The image as uint16 for 16-bit PNG: `round(value) + png_offset`, clipped."""
        return np.clip(np.rint(self.image.astype(np.float64)) + self.png_offset, 0, 65535).astype(np.uint16)
