"""PNG, JPEG, TIFF and BMP (8- and 16-bit, one page or a multi-page stack) through opencv."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesion_studio.core.errors import ImageLoadError
from lesion_studio.core.image import ImageSource, MedicalImage
from lesion_studio.core.imageio import common
from lesion_studio.core.imageio.common import finish_pixels, luma_from_rgb
from lesion_studio.core.windowing import default_window
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")

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


def _declared_pixels(path: Path) -> tuple[tuple[int, ...], int] | None:
    """`(shape, pixels)` the file's header declares (all TIFF pages), read without decoding.

    PIL's format plugins are used directly (not `Image.open`, whose own decompression-bomb
    limit would interfere); None when PIL cannot parse the header (opencv then decides).
    """
    from PIL import BmpImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

    with open(path, "rb") as fh:
        prefix = fh.read(16)
        fh.seek(0)
        plugins = (
            (PngImagePlugin.PngImageFile, PngImagePlugin._accept),
            (TiffImagePlugin.TiffImageFile, TiffImagePlugin._accept),
            (JpegImagePlugin.JpegImageFile, JpegImagePlugin._accept),
            (BmpImagePlugin.BmpImageFile, BmpImagePlugin._accept),
        )
        for factory, accept in plugins:
            if not accept(prefix):
                continue
            try:
                image = factory(fh, str(path))
            except Exception:
                return None
            width, height = image.size
            total = width * height
            pages = 1
            if isinstance(image, TiffImagePlugin.TiffImageFile):
                budget = common.MAX_PIXELS
                try:
                    while total <= budget:
                        image.seek(pages)
                        total += image.size[0] * image.size[1]
                        pages += 1
                except Exception:  # EOFError after the last page
                    pass
            shape = (height, width) if pages == 1 else (pages, height, width)
            return shape, total
    return None


def load_raster(path: Path, fmt: str) -> MedicalImage:
    """A raster image file; pixel values are kept (16-bit stays 16-bit), spacing unknown.

    The header's declared size is checked against `common.MAX_PIXELS` before decoding.
    """
    try:
        declared = _declared_pixels(path)
    except OSError as exc:
        raise ImageLoadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    if declared is not None and declared[1] > common.MAX_PIXELS:
        shape, total = declared
        what = "the header declares" if len(shape) == 2 else "the TIFF pages declare at least"
        common.check_pixel_budget(shape if len(shape) == 2 else (total,), path, what)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works for non-ASCII paths, unlike imread
    except OSError as exc:
        raise ImageLoadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    pages: list[np.ndarray] = []
    try:
        if fmt == "tiff":
            ok, decoded = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
            if ok:
                pages = list(decoded)
        else:
            page = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if page is not None:
                pages = [page]
    except cv2.error as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "opencv error"
        raise ImageLoadError(f"cannot decode the {fmt.upper()} image: {message}", path) from exc
    except MemoryError as exc:
        raise ImageLoadError(f"not enough memory to decode the {fmt.upper()} image", path) from exc
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
