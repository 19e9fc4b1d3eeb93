"""NIfTI with the source geometry: `nifti/images/ID.nii.gz` (float32) and `nifti/masks/ID.nii.gz`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesion_studio.core.annotation.mask_io import save_nifti
from lesion_studio.core.export.atomic import atomic_file
from lesion_studio.core.export.item import ExportItem

FOLDER = "nifti"


def save_image_nifti(image: np.ndarray, path: Path, geometry) -> Path:
    """A float32 `(H, W)` image as NIfTI with `(spacing_xyz, origin_xyz, direction)`, atomically."""
    sitk_image = sitk.GetImageFromArray(np.ascontiguousarray(image, dtype=np.float32))
    spacing, origin, direction = geometry
    sitk_image.SetSpacing(tuple(float(v) for v in spacing))
    sitk_image.SetOrigin(tuple(float(v) for v in origin))
    sitk_image.SetDirection(tuple(float(v) for v in direction))
    with atomic_file(path) as tmp:
        sitk.WriteImage(sitk_image, str(tmp), useCompression=True)
    return path


def write(item: ExportItem, out_dir: Path) -> list[Path]:
    image = out_dir / FOLDER / "images" / f"{item.item_id}.nii.gz"
    mask = out_dir / FOLDER / "masks" / f"{item.item_id}.nii.gz"
    save_image_nifti(item.image, image, item.geometry)
    mask.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(item.mask, mask, item.geometry)
    return [image, mask]
