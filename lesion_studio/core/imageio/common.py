"""Small helpers shared by the format readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesion_studio.core.errors import ImageLoadError

#: Largest image (pixels, all pages/slices together) a reader decodes: 2**28 = 268 million,
#: about 1 GiB as float32. Files whose header declares more are refused before any pixel is
#: decoded. Read at call time, so a program (or a test) may change it.
MAX_PIXELS = 2**28

#: ITU-R BT.601 luma weights for R, G, B: the stated rule for colour → grayscale.
BT601_LUMA = (0.299, 0.587, 0.114)


def luma_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Grayscale from an `(..., 3)` RGB array with the BT.601 luma weights."""
    r, g, b = BT601_LUMA
    rgb = rgb.astype(np.float64, copy=False)
    return rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b


def finish_pixels(values: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    """float32 pixels with non-finite values replaced by the finite minimum (and noted)."""
    pixels = np.ascontiguousarray(values, dtype=np.float32)
    finite = np.isfinite(pixels)
    if not finite.all():
        if not finite.any():
            raise ImageLoadError("every pixel is NaN or infinite", path)
        fill = float(pixels[finite].min())
        count = int((~finite).sum())
        pixels[~finite] = fill
        notes.append(f"{count} NaN/infinite pixel(s) replaced by the minimum {fill:g}")
    return pixels


def check_pixel_budget(shape: tuple[int, ...], path: Path, what: str = "the header declares") -> None:
    """Refuse a declared image size above `MAX_PIXELS` before decoding (ImageLoadError)."""
    count = 1
    for n in shape:
        count *= max(int(n), 0)
    if count > MAX_PIXELS:
        dims = "×".join(str(int(n)) for n in shape)
        raise ImageLoadError(
            f"{what} {dims} = {count:,} pixels, more than the limit of {MAX_PIXELS:,} "
            f"(lesion_studio.core.imageio.common.MAX_PIXELS); not decoded",
            path,
        )
