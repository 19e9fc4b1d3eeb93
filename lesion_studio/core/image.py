"""`MedicalImage`: pixels in physical units plus the geometry and identity kept beside them.

Conventions (decided once, used everywhere):
- `pixels` is float32, `(H, W)` for 2D images or `(slices, H, W)` for volumes, in physical
  units (Hounsfield units for CT after rescale), larger value = denser (MONOCHROME2 sense).
- `spacing_mm` is per array axis in array order: `(row_mm, col_mm)` or
  `(slice_mm, row_mm, col_mm)`; `None` when the file has no valid spacing (then everything
  works in pixels and says so).
- `origin_mm` and `direction` follow SimpleITK/ITK (LPS, x-y-z order, direction as a
  row-major 3x3 tuple); `None` when the file carries no patient geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Window:
    """A display window: `center` and `width` in the image's units (HU for CT)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    @classmethod
    def from_range(cls, low: float, high: float) -> "Window":
        """Window covering `[low, high]`; a degenerate range gets width 1."""
        width = max(float(high) - float(low), 1.0)
        return cls(center=(float(low) + float(high)) / 2.0, width=width)


@dataclass(frozen=True)
class ImageSource:
    """Where pixels came from and who they belong to, kept apart from the pixels."""

    path: Path
    format: str  # "dicom", "dicom-series", "nifti", "nrrd", "metaimage", "png", "jpeg", "tiff", ...
    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    series_description: str | None = None
    transfer_syntax: str | None = None
    notes: tuple[str, ...] = ()  # conversions applied, e.g. "MONOCHROME1 inverted"


@dataclass(frozen=True, eq=False)
class MedicalImage:
    """A 2D image or a volume with spacing, window, modality and provenance."""

    pixels: np.ndarray
    spacing_mm: tuple[float, ...] | None
    modality: str
    window: Window
    window_source: str  # "dicom", "preset", "percentile"
    source: ImageSource
    unit: str = ""  # "HU" for CT, "" when unitless
    origin_mm: tuple[float, float, float] | None = None
    direction: tuple[float, ...] | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.float32:
            raise TypeError(f"pixels must be float32, got {self.pixels.dtype}")
        if self.pixels.ndim not in (2, 3):
            raise ValueError(f"pixels must be (H, W) or (slices, H, W), got {self.pixels.shape}")
        if self.spacing_mm is not None and len(self.spacing_mm) != self.pixels.ndim:
            raise ValueError(
                f"spacing_mm has {len(self.spacing_mm)} values for a {self.pixels.ndim}-D image"
            )

    @property
    def is_volume(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def n_slices(self) -> int:
        return self.pixels.shape[0] if self.is_volume else 1

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape)

    @property
    def plane_shape(self) -> tuple[int, int]:
        """`(H, W)` of one displayed plane."""
        return (int(self.pixels.shape[-2]), int(self.pixels.shape[-1]))

    @property
    def plane_spacing_mm(self) -> tuple[float, float] | None:
        """`(row_mm, col_mm)` of one plane, or None when unknown."""
        if self.spacing_mm is None:
            return None
        return (float(self.spacing_mm[-2]), float(self.spacing_mm[-1]))

    def plane(self, index: int = 0) -> np.ndarray:
        """One `(H, W)` plane: the image itself for 2D, slice `index` for volumes."""
        if not self.is_volume:
            return self.pixels
        return self.pixels[index]

    def sitk_geometry(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """`(spacing_xyz, origin_xyz, direction)` as SimpleITK expects for this image's array.

        Unknown spacing becomes 1 mm and unknown origin/direction the identity, which is what
        SimpleITK assumes for a file without geometry.
        """
        dim = self.pixels.ndim
        spacing = self.spacing_mm if self.spacing_mm is not None else (1.0,) * dim
        spacing_xyz = tuple(float(s) for s in reversed(spacing))
        if self.origin_mm is not None:
            origin = tuple(float(v) for v in self.origin_mm[:dim])
        else:
            origin = (0.0,) * dim
        if self.direction is not None and dim == 3:
            direction = tuple(float(v) for v in self.direction)
        elif self.direction is not None and dim == 2:
            d = self.direction
            direction = (float(d[0]), float(d[1]), float(d[3]), float(d[4]))
        else:
            direction = tuple(float(v) for v in np.eye(dim).ravel())
        return spacing_xyz, origin, direction

    def with_pixels(self, pixels: np.ndarray) -> "MedicalImage":
        """A copy with other pixels of the same shape (e.g. a synthetic working copy)."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.shape != self.pixels.shape:
            raise ValueError(f"shape {pixels.shape} differs from the image's {self.pixels.shape}")
        return replace(self, pixels=pixels)
