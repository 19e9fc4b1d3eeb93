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


#: Projection radiography modalities whose stored window may be the detector's whole range.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "RG", "MG", "RF", "XA", "PX", "IO", "DR"})

#: A radiograph's stored window is kept only if the image's 1–99 % pixel range fills at least
#: this share of the window's width. Below it, a quarter or more of the grey scale goes to values
#: that (almost) no pixel has and the image looks washed out: the demo RG1 stores
#: 17767 / 30000 (2767–32767, the detector's whole 15-bit range) for pixels spanning
#: 9978–30611, a fill of 0.69; the sample radiographs and MR files with reading windows fill
#: 0.81–1.0.
MIN_STORED_WINDOW_FILL = 0.75


def stored_window_problem(window: Window, pixels: np.ndarray, modality: str) -> str:
    """Why a file's own window would show these pixels badly ("" when it is fine).

    Any modality: a window that misses the 1–99 % pixel range entirely (a blank image). A
    projection radiograph (CR, DX, ...): a window the 1–99 % range fills less than
    `MIN_STORED_WINDOW_FILL` of (too wide: washed out). CT and MR windows are otherwise kept
    as stored: narrow reading windows (lung, brain) are deliberate there.
    """
    data = percentile_window(pixels)
    lo, hi = data.low, data.high
    if window.width <= 0 or hi < window.low or lo > window.high:
        return (f"the file's window {window.center:g}/{window.width:g} misses the pixel values "
                f"({lo:g}–{hi:g})")
    if modality.upper() in PROJECTION_MODALITIES:
        fill = (min(hi, window.high) - max(lo, window.low)) / window.width
        if fill < MIN_STORED_WINDOW_FILL:
            return (f"the file's window {window.center:g}/{window.width:g} is too wide for the pixel "
                    f"values ({lo:g}–{hi:g} fill {fill:.0%} of it): the 1–99 % range is used")
    return ""
