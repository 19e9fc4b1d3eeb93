"""Display windows: named presets and the automatic choice for an image without one."""

from __future__ import annotations

import numpy as np

from lesion_studio.core.image import Window

#: Named window presets (center, width) in HU, as radiology viewers ship them.
CT_PRESETS: dict[str, Window] = {
    "CT lung": Window(-600.0, 1500.0),
    "CT soft tissue": Window(40.0, 400.0),
    "CT bone": Window(400.0, 1800.0),
    "CT brain": Window(40.0, 80.0),
}

#: Modality default used when a CT file carries no window of its own.
CT_DEFAULT_PRESET = "CT soft tissue"

PERCENTILE_LOW = 1.0
PERCENTILE_HIGH = 99.0
_MAX_PERCENTILE_SAMPLES = 1_000_000


def percentile_window(
    pixels: np.ndarray, low: float = PERCENTILE_LOW, high: float = PERCENTILE_HIGH
) -> Window:
    """Window spanning the `low`–`high` percentiles of the finite pixels.

    Large images are subsampled on a regular grid, which changes the percentiles by far less
    than a display level and keeps this fast on 4k radiographs and 300-slice volumes.
    """
    flat = np.asarray(pixels).ravel()
    if flat.size > _MAX_PERCENTILE_SAMPLES:
        flat = flat[:: flat.size // _MAX_PERCENTILE_SAMPLES + 1]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return Window(0.0, 1.0)
    lo, hi = np.percentile(flat, [low, high])
    if hi <= lo:  # nearly constant image: fall back to the full range
        lo, hi = float(flat.min()), float(flat.max())
    return Window.from_range(float(lo), float(hi))


def default_window(pixels: np.ndarray, modality: str) -> tuple[Window, str]:
    """The window to show an image with no usable stored window, and where it came from."""
    if modality.upper() == "CT":
        return CT_PRESETS[CT_DEFAULT_PRESET], "preset"
    return percentile_window(pixels), "percentile"
