"""What the viewer shows: the open image, its display window and the current slice.

Qt-free and evented: the GUI controller changes it and widgets re-render on its events, so
the same state can be driven from tests or scripts.

Window rule. A new image opens at, and Reset window (Ctrl+R) returns to, `MedicalImage.window`,
which the reader chose once when it read the file (`core/imageio`, `core/windowing`):

- A DICOM file's stored window (the first Window Center/Width value, width > 0) is kept when
  plausible. `windowing.stored_window_problem` judges it implausible, and the automatic
  1–99 % percentile window replaces it (`window_source == "percentile"`, the reason in the
  image's notes), when
  * in any modality, the window misses the 1–99 % pixel range entirely (a blank image), or
  * in a projection radiograph (`PROJECTION_MODALITIES`: CR, DX, RG, MG, ...), the 1–99 % range
    fills less than `MIN_STORED_WINDOW_FILL` (75 %) of the window's width: a window spanning
    the detector's whole range washes the image out (the demo RG1 stores 17767/30000, a 69 %
    fill).
  Other modalities (CT, MR, ...) otherwise keep the stored window: narrow lung or brain reading
  windows are deliberate.
- Without a usable stored window, and for every non-DICOM file: CT (for NIfTI/NRRD/MHA, inferred
  from Hounsfield-like values) gets the soft-tissue preset (40/400 HU), anything else the
  1–99 % percentile window.

A session or recovery then restores the window it saved. The presets offered here (CT windows,
"Auto (1–99 %)", "Full range") change the window on request only; they never replace the
image's own one.
"""

from __future__ import annotations

from lesion_studio.core.events import EventEmitter
from lesion_studio.core.image import MedicalImage, Window
from lesion_studio.core.windowing import CT_PRESETS, percentile_window


class ViewState:
    """Open image + window + slice. Emits `changed(kind)`: image, window, slice or pixels."""

    def __init__(self) -> None:
        self.changed = EventEmitter()
        self._image: MedicalImage | None = None
        self._window: Window | None = None
        self._slice_index = 0

    @property
    def image(self) -> MedicalImage | None:
        return self._image

    @property
    def window(self) -> Window | None:
        return self._window

    @property
    def slice_index(self) -> int:
        return self._slice_index

    def set_image(self, image: MedicalImage | None) -> None:
        """Show a new image at its window (the rule above), on its middle slice for volumes."""
        self._image = image
        self._window = None if image is None else image.window
        self._slice_index = 0 if image is None else image.n_slices // 2
        self.changed.emit("image")

    def notify_pixels_changed(self) -> None:
        """The image's pixels were edited in place (an accepted synthesis, its undo): redraw."""
        if self._image is not None:
            self.changed.emit("pixels")

    def set_window(self, window: Window) -> None:
        if window.width <= 0:
            raise ValueError(f"window width must be positive, got {window.width}")
        if window != self._window:
            self._window = window
            self.changed.emit("window")

    def adjust_window(self, d_center: float, d_width: float) -> None:
        """Shift the window by deltas (right-drag); the width never drops below 1."""
        if self._window is None:
            return
        self.set_window(Window(self._window.center + d_center, max(1.0, self._window.width + d_width)))

    def reset_window(self) -> None:
        """Back to the image's window as read (the stored one, or the auto window that replaced it)."""
        if self._image is not None:
            self.set_window(self._image.window)

    def presets(self) -> dict[str, Window]:
        """Presets offered for the open image: CT windows for CT, an auto window for all."""
        if self._image is None:
            return {}
        options: dict[str, Window] = {}
        if self._image.modality == "CT" or self._image.unit == "HU":
            options.update(CT_PRESETS)
        options["Auto (1–99 %)"] = percentile_window(self._image.plane(self._slice_index))
        options["Full range"] = Window.from_range(float(self._image.pixels.min()), float(self._image.pixels.max()))
        return options

    def apply_preset(self, name: str) -> None:
        presets = self.presets()
        if name not in presets:
            raise KeyError(f"unknown window preset {name!r}; choose from {sorted(presets)}")
        self.set_window(presets[name])

    def set_slice(self, index: int) -> None:
        """Go to a slice; out-of-range indices are clamped to the volume."""
        if self._image is None:
            return
        index = max(0, min(int(index), self._image.n_slices - 1))
        if index != self._slice_index:
            self._slice_index = index
            self.changed.emit("slice")

    def step_slice(self, delta: int) -> None:
        self.set_slice(self._slice_index + delta)

    def value_at(self, row: int, col: int) -> float | None:
        """Pixel value at `(row, col)` of the current plane, or None outside the image."""
        if self._image is None:
            return None
        h, w = self._image.plane_shape
        if 0 <= row < h and 0 <= col < w:
            return float(self._image.plane(self._slice_index)[row, col])
        return None

    def position_mm(self, row: float, col: float) -> tuple[float, float] | None:
        """`(y_mm, x_mm)` of a pixel position in the plane, or None without spacing."""
        if self._image is None or self._image.plane_spacing_mm is None:
            return None
        row_mm, col_mm = self._image.plane_spacing_mm
        return row * row_mm, col * col_mm
