"""Wires the viewer widgets to the Qt-free `ViewState`: user intent in, rendering out."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from lesion_studio.core.image import Window
from lesion_studio.core.view_state import ViewState
from lesion_studio.widgets.image_canvas import WINDOW_DRAG_FRACTION_PER_PX, ImageCanvas
from lesion_studio.widgets.image_info import ImageInfoPanel
from lesion_studio.widgets.slice_navigator import SliceNavigator
from lesion_studio.widgets.window_level import WindowLevelPanel


def format_cursor(state: ViewState, row: float, col: float) -> tuple[str, str, str]:
    """Status texts for a cursor position: pixel, millimetres, value with unit."""
    image = state.image
    if image is None:
        return "", "", ""
    r, c = int(row), int(col)
    pixel = f"x {c}  y {r} px" + (f"  z {state.slice_index}" if image.is_volume else "")
    mm = state.position_mm(r, c)  # centre of the pixel under the cursor, as DICOM positions are
    mm_text = "mm: spacing unknown" if mm is None else f"x {mm[1]:.1f}  y {mm[0]:.1f} mm"
    value = state.value_at(r, c)
    unit = f" {image.unit}" if image.unit else ""
    value_text = "" if value is None else f"value {value:.6g}{unit}"
    return pixel, mm_text, value_text


class ViewerController(QObject):
    """Keeps canvas, window panel, slice navigator and info panel in step with the state."""

    cursorTextChanged = Signal(str, str, str)  # pixel, mm, value

    def __init__(
        self,
        state: ViewState,
        canvas: ImageCanvas,
        window_panel: WindowLevelPanel,
        slice_navigator: SliceNavigator,
        info_panel: ImageInfoPanel,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.canvas = canvas
        self.window_panel = window_panel
        self.slice_navigator = slice_navigator
        self.info_panel = info_panel
        self._last_cursor: tuple[float, float] | None = None

        state.changed.connect(self._on_state_changed)
        canvas.windowDragged.connect(self._on_window_drag)
        canvas.sliceWheel.connect(state.step_slice)
        canvas.cursorMoved.connect(self._on_cursor)
        canvas.cursorLeft.connect(self._on_cursor_left)
        window_panel.windowEdited.connect(lambda c, w: state.set_window(Window(c, w)))
        window_panel.presetChosen.connect(state.apply_preset)
        window_panel.resetRequested.connect(state.reset_window)
        slice_navigator.sliceRequested.connect(state.set_slice)
        slice_navigator.set_count(1)

    # ------------------------------------------------------------------ intent

    def _on_window_drag(self, dx: float, dy: float) -> None:
        window = self.state.window
        if window is None:
            return
        step = max(window.width, 1.0) * WINDOW_DRAG_FRACTION_PER_PX
        # Right-drag: horizontal widens/narrows, vertical moves the level (drag up = brighter).
        self.state.adjust_window(d_center=dy * step, d_width=dx * step)

    def _on_cursor(self, row: float, col: float) -> None:
        self._last_cursor = (row, col)
        self.cursorTextChanged.emit(*format_cursor(self.state, row, col))

    def _on_cursor_left(self) -> None:
        self._last_cursor = None
        self.cursorTextChanged.emit("", "", "")

    # ------------------------------------------------------------------ rendering

    def _levels(self) -> tuple[float, float]:
        window = self.state.window
        assert window is not None
        return (window.low, window.high)

    def _on_state_changed(self, kind: str) -> None:
        image = self.state.image
        if kind == "image":
            self.info_panel.show_image(image)
            if image is None:
                self.canvas.clear()
                self.slice_navigator.set_count(1)
                return
            self.window_panel.set_unit(image.unit)
            self.window_panel.set_presets(list(self.state.presets()))
            self.slice_navigator.set_count(image.n_slices)
            self._render_plane()
            self._render_window()
            self.slice_navigator.show_slice(self.state.slice_index, image.n_slices)
        elif kind == "window":
            self.canvas.set_levels(self._levels())
            self._render_window()
        elif kind == "pixels" and image is not None:
            self._render_plane()
            if self._last_cursor is not None:
                self._on_cursor(*self._last_cursor)
        elif kind == "slice" and image is not None:
            self._render_plane()
            self.slice_navigator.show_slice(self.state.slice_index, image.n_slices)
            if self._last_cursor is not None:
                self._on_cursor(*self._last_cursor)

    def _render_plane(self) -> None:
        image = self.state.image
        assert image is not None
        self.canvas.show_plane(image.plane(self.state.slice_index), self._levels(), image.plane_spacing_mm)

    def _render_window(self) -> None:
        window = self.state.window
        if window is not None:
            self.window_panel.show_window(window.center, window.width)
