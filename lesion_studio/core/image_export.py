"""Export the working image (with accepted synthetic lesions) and its masks, with provenance.

PNG: the image as 16-bit with a linear map back to physical units recorded in the JSON; the
label map as PNG. NIfTI: float32 image and label map with the source geometry. Every file is
written atomically; `NAME.provenance.json` says what is synthetic and by which model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from lesion_studio import __version__
from lesion_studio.core.annotation import AnnotationDocument
from lesion_studio.core.annotation.mask_io import atomic_write_bytes, save_mask
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.hashing import sha256_file
from lesion_studio.core.image import MedicalImage


def _stem(path: Path) -> tuple[Path, str]:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".png"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)]), ("nifti" if "nii" in suffix else "png")
    return path, "png"


def png_mapping(pixels: np.ndarray) -> tuple[float, float]:
    """`(slope, intercept)` so that `stored = round((value - intercept) / slope)` fits uint16.

    Whole-number images within a 65536-value span are stored exactly (slope 1), as CT in HU is.
    """
    lo, hi = float(pixels.min()), float(pixels.max())
    integral = bool(np.all(np.equal(np.mod(pixels, 1), 0)))
    if integral and hi - lo <= 65535:
        return 1.0, lo
    return max(hi - lo, 1e-12) / 65535.0, lo


def _source_hash(image: MedicalImage) -> str | None:
    path = image.source.path
    return sha256_file(path) if path.is_file() else None


def export_working_image(image: MedicalImage, doc: AnnotationDocument, path: str | Path) -> list[Path]:
    """Write image + label map (+ provenance JSON); returns the written paths."""
    stem, fmt = _stem(Path(path))
    stem.parent.mkdir(parents=True, exist_ok=True)
    if tuple(doc.shape) != tuple(image.shape):
        raise LesionStudioError(f"masks {doc.shape} do not fit the image {image.shape}", path)
    pixels = image.pixels
    provenance: dict = {
        "format": "lesion-studio-export",
        "package_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_image": str(image.source.path),
        "source_sha256": _source_hash(image),
        "modality": image.modality,
        "unit": image.unit,
        "shape": list(image.shape),
        "spacing_mm": None if image.spacing_mm is None else list(image.spacing_mm),
        "contains_synthetic": any(doc.lesion_meta(i).origin == "synthetic" for i in doc.lesion_ids),
        "lesions": [],
    }
    for record in doc.lesion_table():
        meta = doc.lesion_meta(record.id)
        entry = {
            "id": record.id, "class": record.class_name, "origin": record.origin, "slice": record.slice,
            "area_px": record.area_px, "equivalent_diameter_px": record.equivalent_diameter_px,
            "equivalent_diameter_mm": record.equivalent_diameter_mm,
            "moment_diameter_px": record.moment_diameter_px, "moment_diameter_mm": record.moment_diameter_mm,
        }
        if meta is not None and getattr(meta, "provenance", None):
            entry["synthesis"] = meta.provenance
        provenance["lesions"].append(entry)

    written: list[Path] = []
    if fmt == "png":
        if image.is_volume:
            raise LesionStudioError("PNG export holds one 2D image; export volumes as NIfTI (.nii.gz)", path)
        slope, intercept = png_mapping(pixels)
        stored = np.clip(np.round((pixels - intercept) / slope), 0, 65535).astype(np.uint16)
        ok, buf = cv2.imencode(".png", stored)
        if not ok:
            raise LesionStudioError("PNG encoding failed", path)
        image_path = atomic_write_bytes(stem.with_name(stem.name + ".png"), buf.tobytes())
        provenance["png_value_map"] = {"slope": slope, "intercept": intercept, "value": "stored * slope + intercept"}
        mask_path = save_mask(doc.labels, stem.with_name(stem.name + ".mask.png"))
    else:
        import SimpleITK as sitk

        spacing, origin, direction = image.sitk_geometry()
        volume = sitk.GetImageFromArray(pixels.astype(np.float32))
        volume.SetSpacing(spacing)
        volume.SetOrigin(origin)
        volume.SetDirection(direction)
        image_path = stem.with_name(stem.name + ".nii.gz")
        tmp = image_path.with_name("." + image_path.name + ".tmp.nii.gz")
        try:
            sitk.WriteImage(volume, str(tmp), True)
            tmp.replace(image_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        mask_path = save_mask(doc.labels, stem.with_name(stem.name + ".mask.nii.gz"), doc.geometry)
    provenance["image_file"] = image_path.name
    provenance["mask_file"] = Path(mask_path).name
    json_path = atomic_write_bytes(
        stem.with_name(stem.name + ".provenance.json"), json.dumps(provenance, indent=1, default=str).encode()
    )
    written += [image_path, Path(mask_path), json_path]
    return written
