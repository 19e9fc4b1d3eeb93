"""PNG, JPEG, TIFF and BMP (8- and 16-bit, one page or a multi-page stack) through opencv."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lesion_studio.core.errors import ImageLoadError
from lesion_studio.core.image import ImageSource, MedicalImage
from lesion_studio.core.imageio.common import finish_pixels, luma_from_rgb
from lesion_studio.core.windowing import default_window

FORMAT_BY_SUFFIX = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
}


def _to_gray(page: np.ndarray, notes: list[str]) -> np.ndarray:
    if page.ndim == 2:
        return page
    channels = page.shape[2]
    if channels == 1:
        return page[..., 0]
    if channels == 4:
        page = page[..., :3]
        if "alpha channel dropped" not in notes:
            notes.append("alpha channel dropped")
    if np.array_equal(page[..., 0], page[..., 1]) and np.array_equal(page[..., 1], page[..., 2]):
        return page[..., 0]
    if "colour converted to grayscale (BT.601 luma)" not in notes:
        notes.append("colour converted to grayscale (BT.601 luma)")
    return luma_from_rgb(page[..., ::-1])  # opencv gives BGR


def load_raster(path: Path, fmt: str) -> MedicalImage:
    """A raster image file; pixel values are kept (16-bit stays 16-bit), spacing unknown."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works for non-ASCII paths, unlike imread
    except OSError as exc:
        raise ImageLoadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    pages: list[np.ndarray] = []
    if fmt == "tiff":
        ok, decoded = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
        if ok:
            pages = list(decoded)
    else:
        page = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if page is not None:
            pages = [page]
    if not pages:
        raise ImageLoadError(f"not a readable {fmt.upper()} image (corrupt or unsupported encoding)", path)
    notes: list[str] = []
    gray = [_to_gray(p, notes) for p in pages]
    if len({g.shape for g in gray}) != 1:
        raise ImageLoadError("the TIFF pages have different sizes and cannot form a stack", path)
    array = gray[0] if len(gray) == 1 else np.stack(gray)
    pixels = finish_pixels(array, path, notes)
    window, window_source = default_window(pixels, "OT")
    return MedicalImage(
        pixels=pixels,
        spacing_mm=None,
        modality="OT",
        window=window,
        window_source=window_source,
        source=ImageSource(path=path, format=fmt, notes=tuple(notes + ["spacing unknown: raster files carry none"])),
    )
