"""NIfTI, NRRD and MetaImage through SimpleITK, with geometry kept in ITK's convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesion_studio.core.errors import ImageLoadError
from lesion_studio.core.image import ImageSource, MedicalImage
from lesion_studio.core.imageio import common
from lesion_studio.core.imageio.common import finish_pixels, luma_from_rgb
from lesion_studio.core.windowing import default_window
from lesion_studio.lazy import lazy_import

sitk = lazy_import("SimpleITK")

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


#: NIfTI datatype codes of floating-point voxels: float32, float64.
_NIFTI_FLOAT_DTYPES = {16: "f4", 64: "f8"}


def _nifti_non_finite(path: Path) -> np.ndarray | None:
    """Mask (flat, file order) of NaN/Inf voxels in a float NIfTI file, None if there are none.

    ITK's NIfTI reader silently turns NaN and Inf into 0, so the voxel data is read again
    here, straight from the file (NIfTI-1 and NIfTI-2, either byte order, gzip or not).
    """
    import gzip
    import struct

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            head = fh.read(540)
            for order in "<>":
                size = struct.unpack(order + "i", head[:4])[0]
                if size == 348:
                    datatype = struct.unpack(order + "h", head[70:72])[0]
                    dims = struct.unpack(order + "8h", head[40:56])
                    offset = int(struct.unpack(order + "f", head[108:112])[0])
                    break
                if size == 540:
                    datatype = struct.unpack(order + "h", head[12:14])[0]
                    dims = struct.unpack(order + "8q", head[16:80])
                    offset = int(struct.unpack(order + "q", head[168:176])[0])
                    break
            else:
                return None
            if datatype not in _NIFTI_FLOAT_DTYPES or not 1 <= dims[0] <= 7:
                return None
            count = int(np.prod([max(int(d), 1) for d in dims[1 : dims[0] + 1]], dtype=np.int64))
            dtype = np.dtype(order + _NIFTI_FLOAT_DTYPES[datatype])
            fh.seek(max(offset, len(head) if size == 540 else 352))
            data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
    except (OSError, EOFError, struct.error, ValueError):
        return None
    bad = ~np.isfinite(data)
    return bad if bad.any() else None


def load_sitk_image(path: Path, fmt: str) -> MedicalImage:
    """A NIfTI/NRRD/MHA file as a MedicalImage; 3D with one slice becomes 2D.

    The declared size is checked against `common.MAX_PIXELS` before the voxels are read.
    NaN/Inf voxels are treated alike in every format: replaced by the finite minimum with a
    note (see `finish_pixels`), and an image with no finite voxel is refused.
    """
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        common.check_pixel_budget(tuple(reversed(reader.GetSize())), path)
    except RuntimeError:
        pass  # ReadImage below reports an unreadable file
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
    elif fmt == "nifti":
        bad = _nifti_non_finite(path)
        if bad is not None and bad.size == array.size:
            array = array.astype(np.float32 if array.dtype.itemsize <= 4 else np.float64)
            array.reshape(-1)[bad] = np.nan  # ITK made them 0; restore so they are counted

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
