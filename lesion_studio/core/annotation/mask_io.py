"""Mask files: PNG for 2D label maps, NIfTI (`.nii.gz`) with the source geometry for any.

- PNG: uint8 when every id is below 256, else uint16; read back unchanged
  (`cv2.IMREAD_UNCHANGED`). PNG carries no geometry.
- NIfTI: written with SimpleITK using the image's `(spacing_xyz, origin_xyz, direction)` from
  `MedicalImage.sitk_geometry()`, so SimpleITK and 3D Slicer overlay it on the image.

Every write is atomic (temp file in the same folder, then `os.replace`): a crash leaves the old
file or the new one, never half of one. Errors are `MaskError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lesion_studio.core.annotation.classes import LesionMeta
from lesion_studio.core.annotation.document import MAX_LABEL, AnnotationDocument, Geometry
from lesion_studio.core.errors import MaskError
from lesion_studio.core.export.atomic import fsync_dir, temp_path, write_bytes
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")
sitk = lazy_import("SimpleITK")
_skmeasure = lazy_import("skimage.measure")

PNG_SUFFIXES = (".png",)
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def mask_format(path: str | Path) -> str:
    """"png" or "nifti" from the file name; MaskError for anything else."""
    name = Path(path).name.lower()
    if name.endswith(PNG_SUFFIXES):
        return "png"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    raise MaskError("unsupported mask format (use .png for 2D, .nii.gz for 2D or 3D)", path)


def describe_shape(shape: tuple[int, ...]) -> str:
    """`(H, W)` as "W×H", `(slices, H, W)` as "W×H×slices" (how viewers state sizes)."""
    if len(shape) == 2:
        return f"{shape[1]}×{shape[0]}"
    if len(shape) == 3:
        return f"{shape[2]}×{shape[1]}×{shape[0]}"
    return "×".join(str(s) for s in shape)


# ---------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the whole new one (the
    export writers' `write_bytes`: one implementation of atomic writes)."""
    return write_bytes(path, data)


# ---------------------------------------------------------------- PNG


def encode_png(array: np.ndarray, compression: int = 3) -> bytes:
    """A 2D label or location map as PNG bytes: uint8 when max < 256, else uint16."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"PNG holds a 2D mask, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > MAX_LABEL):
        raise ValueError("mask values must be within 0..65535 for PNG")
    dtype = np.uint8 if array.size == 0 or array.max() < 256 else np.uint16
    ok, buf = cv2.imencode(".png", array.astype(dtype, copy=False), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def save_png(array: np.ndarray, path: str | Path, compression: int = 3) -> Path:
    """Write a 2D mask as PNG (atomically)."""
    try:
        data = encode_png(array, compression)
    except ValueError as exc:
        raise MaskError(str(exc), path) from exc
    return atomic_write_bytes(path, data)


def load_png(path: str | Path) -> np.ndarray:
    """Read a PNG mask unchanged: `(H, W)` uint8 or uint16. Grey RGB(A) masks are accepted."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MaskError(f"cannot read mask file ({exc.strerror or exc})", path) from exc
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise MaskError("not a readable PNG image", path)
    if array.ndim == 3:
        colour = array[..., :3]
        if not ((colour == colour[..., :1]).all()):
            raise MaskError("colour PNG: a mask must be a grey image with one id per pixel", path)
        array = np.ascontiguousarray(colour[..., 0])
    return array


# ---------------------------------------------------------------- NIfTI


def save_nifti(array: np.ndarray, path: str | Path, geometry: Geometry | None = None) -> Path:
    """Write a `(H, W)` or `(slices, H, W)` mask as NIfTI with the image's SimpleITK geometry."""
    path = Path(path)
    array = np.asarray(array)
    if array.size and (array.min() < 0 or array.max() > MAX_LABEL):
        raise MaskError("mask values must be within 0..65535", path)
    dtype = np.uint8 if array.size == 0 or array.max() < 256 else np.uint16
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
    if geometry is not None:
        spacing, origin, direction = geometry
        if len(spacing) != array.ndim:
            raise MaskError(f"geometry is {len(spacing)}-D but the mask is {array.ndim}-D", path)
        image.SetSpacing(tuple(float(v) for v in spacing))
        image.SetOrigin(tuple(float(v) for v in origin))
        image.SetDirection(tuple(float(v) for v in direction))
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    tmp = temp_path(path, suffix)
    try:
        sitk.WriteImage(image, str(tmp), useCompression=suffix == ".nii.gz")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except RuntimeError as exc:
        tmp.unlink(missing_ok=True)
        raise MaskError(f"cannot write NIfTI ({exc})", path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def load_nifti(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI mask: the array in `(slices, H, W)` / `(H, W)` order and its geometry."""
    path = Path(path)
    if not path.is_file():
        raise MaskError("mask file not found", path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise MaskError(f"not a readable NIfTI file ({str(exc).strip().splitlines()[-1]})", path) from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MaskError("a mask must have one value per voxel", path)
    geometry = (tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))
    return sitk.GetArrayFromImage(image), geometry


# ---------------------------------------------------------------- generic


def save_mask(array: np.ndarray, path: str | Path, geometry: Geometry | None = None) -> Path:
    """Write a mask as PNG (2D only) or NIfTI, chosen by the file name."""
    if mask_format(path) == "png":
        array = np.asarray(array)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise MaskError(f"PNG holds one 2D mask; this one is {describe_shape(array.shape)} (use .nii.gz)", path)
        return save_png(array, path)
    return save_nifti(array, path, geometry)


def load_mask(path: str | Path) -> tuple[np.ndarray, Geometry | None]:
    """Read a PNG or NIfTI mask; geometry is None for PNG."""
    if mask_format(path) == "png":
        return load_png(path), None
    return load_nifti(path)


def export_layer(doc: AnnotationDocument, path: str | Path, layer: str = "labels") -> Path:
    """Save the document's label map (or location map) with the image's geometry."""
    array = doc.labels if layer == "labels" else doc.location
    return save_mask(array, path, doc.geometry)


def _fit_to_document(array: np.ndarray, doc: AnnotationDocument, path: Path) -> np.ndarray:
    """The mask in the document's shape (a 1-slice volume and a plane are the same), or MaskError."""
    shape = doc.shape
    if array.shape == shape:
        return array
    if array.ndim == 3 and array.shape[0] == 1 and array.shape[1:] == shape:
        return array[0]
    if len(shape) == 3 and shape[0] == 1 and array.shape == shape[1:]:
        return array[None]
    raise MaskError(f"mask is {describe_shape(array.shape)} but the image is {describe_shape(shape)}", path)


def _present_values(array: np.ndarray) -> np.ndarray:
    """Sorted distinct values; a bincount for small unsigned types (much faster than unique)."""
    if array.dtype in (np.uint8, np.uint16) and array.size:
        return np.flatnonzero(np.bincount(array.ravel()))
    return np.unique(array)


def _check_geometry(mask_geometry: Geometry, doc: AnnotationDocument, path: Path) -> None:
    """MaskError when a NIfTI mask would not overlay the image (spacing, origin, direction)."""
    if doc.geometry is None or doc.spacing_mm is None:
        return  # the image has no geometry to compare with (e.g. a PNG radiograph)
    names = ("spacing", "origin", "direction")
    for name, ours, theirs, atol in zip(names, doc.geometry, mask_geometry, (1e-4, 1e-3, 1e-4)):
        a = np.asarray(ours, dtype=float)
        b = np.asarray(theirs, dtype=float)
        if a.shape != b.shape:
            continue  # dimension differences are handled by the shape check
        if not np.allclose(a, b, rtol=1e-4, atol=atol):
            fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ")"  # noqa: E731
            raise MaskError(f"mask {name} is {fmt(b)} but the image's is {fmt(a)}", path)


def labels_from_mask(array: np.ndarray, components: bool | None = None) -> np.ndarray:
    """A uint16 label map from a mask: binary masks become connected components, ids kept otherwise.

    `components=None` decides by the values: a mask holding only {0, 1} or {0, 255} is binary.
    Components use full connectivity (8 in 2D, 26 in 3D), as `skimage.measure.label` does.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise ValueError("mask values are not whole numbers")
        array = rounded.astype(np.int64)
    values = _present_values(array)
    if values.size and (values[0] < 0 or values[-1] > MAX_LABEL):
        raise ValueError(f"mask values must be within 0..{MAX_LABEL}, got {values[0]}..{values[-1]}")
    if components is None:
        nonzero = set(values.tolist()) - {0}
        components = nonzero <= {1} or nonzero <= {255}
    if not components:
        return array.astype(np.uint16)
    labels, count = _skmeasure.label(array != 0, return_num=True)
    if count > MAX_LABEL:
        raise ValueError(f"mask has {count} connected components, more than {MAX_LABEL}")
    return labels.astype(np.uint16)


def import_mask(
    doc: AnnotationDocument,
    path: str | Path,
    *,
    class_name: str | None = None,
    components: bool | None = None,
    layer: str = "labels",
) -> list[int]:
    """Replace the document's label map (or location map) by a ground-truth mask file (undoable).

    The mask must have the image's size and, for NIfTI, its geometry. Binary masks become one
    lesion per connected component; every imported lesion gets origin "imported" and
    `class_name` (default: the document's current class). Returns the lesion ids.
    """
    path = Path(path)
    array, geometry = load_mask(path)
    array = _fit_to_document(array, doc, path)
    if geometry is not None:
        _check_geometry(geometry, doc, path)
    if layer == "location":
        doc.replace_layer((array != 0).astype(np.uint8), layer="location", name="import location map")
        return []
    try:
        labels = labels_from_mask(array, components)
    except ValueError as exc:
        raise MaskError(str(exc), path) from exc
    class_name = doc.current_class if class_name is None else class_name
    doc.lesion_class(class_name)  # unknown class -> ValueError before anything changes
    ids = [int(v) for v in _present_values(labels) if v != 0]
    doc.replace_layer(labels, meta={i: LesionMeta(class_name, "imported") for i in ids}, name="import mask")
    return ids
