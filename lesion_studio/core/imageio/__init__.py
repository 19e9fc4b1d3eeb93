"""Medical image IO: `load_image(path)` for any supported file or DICOM series folder.

Every failure is an `ImageLoadError` naming the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from lesion_studio.core.errors import ImageLoadError, SeriesChoiceError
from lesion_studio.core.image import MedicalImage
from lesion_studio.core.imageio import raster, sitk_formats
from lesion_studio.core.imageio.dicom import (
    SeriesInfo,
    is_dicom_file,
    load_dicom_file,
    load_dicom_series,
    scan_series,
)

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")

#: File-dialog filter patterns by format family.
FILE_PATTERNS: dict[str, tuple[str, ...]] = {
    "DICOM": ("*.dcm", "*.dicom", "*.ima", "*"),
    "NIfTI": ("*.nii", "*.nii.gz"),
    "NRRD": ("*.nrrd", "*.nhdr"),
    "MetaImage": ("*.mha", "*.mhd"),
    "Raster": ("*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp"),
}

__all__ = [
    "FILE_PATTERNS",
    "ImageLoadError",
    "MedicalImage",
    "SeriesChoiceError",
    "SeriesInfo",
    "load_image",
    "load_series",
    "scan_series",
]


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def load_image(path: str | os.PathLike[str], series_uid: str | None = None) -> MedicalImage:
    """Load a file (DICOM, NIfTI, NRRD, MHA/MHD, PNG, JPEG, TIFF, BMP) or a DICOM folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ImageLoadError("no such file or folder", path)
    if path.is_dir():
        return load_series(path, series_uid)
    if not os.access(path, os.R_OK):
        raise ImageLoadError("cannot read the file: permission denied", path)
    if path.stat().st_size == 0:
        raise ImageLoadError("the file is empty", path)
    suffix = _suffix(path)
    if suffix in sitk_formats.FORMAT_BY_SUFFIX:
        return sitk_formats.load_sitk_image(path, sitk_formats.FORMAT_BY_SUFFIX[suffix])
    if suffix in raster.FORMAT_BY_SUFFIX:
        return raster.load_raster(path, raster.FORMAT_BY_SUFFIX[suffix])
    if suffix in DICOM_SUFFIXES or is_dicom_file(path) or suffix == "":
        return load_dicom_file(path)
    try:
        return load_dicom_file(path)
    except ImageLoadError:
        raise ImageLoadError(
            f"unsupported file type '{suffix}': expected DICOM, NIfTI, NRRD, MHA/MHD, PNG, JPEG or TIFF",
            path,
        ) from None


def load_series(folder: str | os.PathLike[str], series_uid: str | None = None) -> MedicalImage:
    """Load one DICOM series from a folder (see `load_dicom_series`)."""
    return load_dicom_series(Path(folder).expanduser(), series_uid)
