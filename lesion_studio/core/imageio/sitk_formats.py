"""NIfTI, NRRD and MetaImage through SimpleITK, with geometry kept in ITK's convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesion_studio.core.errors import ImageLoadError
from lesion_studio.core.image import ImageSource, MedicalImage
from lesion_studio.core.imageio.common import finish_pixels, luma_from_rgb
from lesion_studio.core.windowing import default_window

FORMAT_BY_SUFFIX = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}


def _looks_like_ct(pixels: np.ndarray) -> bool:
    """Values spanning air (≈ −1000) to bone are a CT volume in Hounsfield units."""
    sample = pixels.ravel()[:: max(1, pixels.size // 200_000)]
    return bool(np.percentile(sample, 1) < -900 and np.percentile(sample, 99) > 100)


def load_sitk_image(path: Path, fmt: str) -> MedicalImage:
    """A NIfTI/NRRD/MHA file as a MedicalImage; 3D with one slice becomes 2D."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise ImageLoadError(f"cannot read as {fmt}: {message}", path) from exc
    notes: list[str] = []
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
        dim = 3
    if dim not in (2, 3):
        raise ImageLoadError(f"{dim}-D images are not supported (2-D images and 3-D volumes are)", path)
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)
    if components in (3, 4):
        array = luma_from_rgb(array[..., :3])
        notes.append("colour converted to grayscale (BT.601 luma)")
    elif components != 1:
        raise ImageLoadError(f"{components} components per pixel; lesion-studio reads single-channel images", path)

    spacing_xyz = image.GetSpacing()
    origin = image.GetOrigin()
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if dim == 3 and array.shape[0] == 1:
        array = array[0]
        spacing_xyz = spacing_xyz[:2]
    spacing = tuple(float(s) for s in reversed(spacing_xyz))
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        notes.append(f"spacing unknown: stored spacing {spacing} is not valid")
        spacing = None  # type: ignore[assignment]
    direction3 = np.eye(3)
    direction3[:dim, :dim] = direction
    origin3 = (tuple(float(v) for v in origin) + (0.0, 0.0, 0.0))[:3]

    pixels = finish_pixels(array, path, notes)
    modality = "OT"
    if _looks_like_ct(pixels):
        modality = "CT"
        notes.append("modality CT inferred from Hounsfield-like values")
    window, window_source = default_window(pixels, modality)
    return MedicalImage(
        pixels=pixels,
        spacing_mm=spacing,
        modality=modality,
        window=window,
        window_source=window_source,
        source=ImageSource(path=path, format=fmt, notes=tuple(notes)),
        unit="HU" if modality == "CT" else "",
        origin_mm=origin3,  # type: ignore[arg-type]
        direction=tuple(direction3.ravel()),
    )
