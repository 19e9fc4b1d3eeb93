"""The image canvas: a pyqtgraph view with zoom at the cursor, pan, fit, 1:1 and W/L drag.

It only renders planes it is handed and reports what the user does (cursor position,
window drags, slice wheel steps) as signals; the controller owns the state.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QVBoxLayout, QWidget

#: Right-drag sensitivity: one screen pixel moves the window by this fraction of its width.
WINDOW_DRAG_FRACTION_PER_PX = 1.0 / 256.0


class _CanvasViewBox(pg.ViewBox):
    """ViewBox where left-drag pans, the wheel zooms at the cursor, right-drag sets W/L and
    Ctrl/Shift + wheel steps through slices."""

    windowDragged = Signal(float, float)  # screen dx, dy since the last event
    sliceWheel = Signal(int)

    def __init__(self) -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.setMouseMode(pg.ViewBox.PanMode)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.screenPos() - ev.lastScreenPos()
            self.windowDragged.emit(float(delta.x()), float(delta.y()))
            return
        super().mouseDragEvent(ev, axis)

    def wheelEvent(self, ev, axis=None):  # noqa: N802
        mods = ev.modifiers()
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
            ev.accept()
            delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
            self.sliceWheel.emit(1 if delta > 0 else -1)
            return
        super().wheelEvent(ev, axis)


class ImageCanvas(QWidget):
    """Shows one `(H, W)` plane with levels; maps the cursor back to pixel coordinates."""

    cursorMoved = Signal(float, float)  # row, col in pixels (fractional)
    cursorLeft = Signal()
    windowDragged = Signal(float, float)  # screen dx, dy
    sliceWheel = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = pg.GraphicsView(background="#101216")
        self.view_box = _CanvasViewBox()
        self.view.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setAutoDownsample(True)
        self.view_box.addItem(self.image_item)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self._plane_shape: tuple[int, int] | None = None
        self._pixel_aspect = 1.0  # displayed height / width of one pixel
        self.view_box.windowDragged.connect(self.windowDragged)
        self.view_box.sliceWheel.connect(self.sliceWheel)
        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.setMouseTracking(True)

    # ---------------------------------------------------------------- rendering

    def clear(self) -> None:
        self.image_item.clear()
        self._plane_shape = None

    def show_plane(self, plane: np.ndarray, levels: tuple[float, float], spacing_mm: tuple[float, float] | None) -> None:
        """Display a plane; a new plane shape or spacing refits the view."""
        shape = (int(plane.shape[0]), int(plane.shape[1]))
        aspect = 1.0 if spacing_mm is None else float(spacing_mm[0]) / float(spacing_mm[1])
        refit = shape != self._plane_shape or aspect != self._pixel_aspect
        self.image_item.setImage(plane, levels=levels, autoLevels=False)
        if refit:
            self._plane_shape = shape
            self._pixel_aspect = aspect
            self.image_item.setTransform(QTransform.fromScale(1.0, aspect))
            self.fit()

    def set_levels(self, levels: tuple[float, float]) -> None:
        self.image_item.setLevels(levels)

    # ---------------------------------------------------------------- navigation

    def image_rect(self) -> QRectF:
        if self._plane_shape is None:
            return QRectF()
        h, w = self._plane_shape
        return QRectF(0.0, 0.0, float(w), float(h) * self._pixel_aspect)

    def fit(self) -> None:
        """Whole image in view."""
        if self._plane_shape is not None:
            self.view_box.setRange(rect=self.image_rect(), padding=0.02)

    def one_to_one(self) -> None:
        """One image pixel (column) per screen pixel, centred on the current view centre."""
        if self._plane_shape is None:
            return
        width_px = max(1.0, float(self.view_box.width()))
        height_px = max(1.0, float(self.view_box.height()))
        center = self.view_box.viewRect().center()
        self.view_box.setRange(
            xRange=(center.x() - width_px / 2, center.x() + width_px / 2),
            yRange=(center.y() - height_px / 2, center.y() + height_px / 2),
            padding=0,
        )

    def zoom_factor(self) -> float:
        """Screen pixels per image column (1.0 at 1:1)."""
        view_width = self.view_box.viewRect().width()
        return float(self.view_box.width()) / view_width if view_width > 0 else 1.0

    def zoom_at(self, factor: float, scene_pos: QPointF | None = None) -> None:
        """Zoom by `factor` (>1 zooms in) keeping `scene_pos` (default: centre) fixed."""
        center = None if scene_pos is None else self.view_box.mapSceneToView(scene_pos)
        self.view_box.scaleBy((1.0 / factor, 1.0 / factor), center=center)

    # ---------------------------------------------------------------- cursor

    def scene_to_pixel(self, scene_pos: QPointF) -> tuple[float, float]:
        """(row, col) in image pixels of a scene position (undoing the aspect transform)."""
        p = self.image_item.mapFromScene(scene_pos)
        return float(p.y()), float(p.x())

    def pixel_to_scene(self, row: float, col: float) -> QPointF:
        return self.image_item.mapToScene(QPointF(col, row))

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if self._plane_shape is None:
            return
        row, col = self.scene_to_pixel(scene_pos)
        h, w = self._plane_shape
        if 0 <= row < h and 0 <= col < w:
            self.cursorMoved.emit(row, col)
        else:
            self.cursorLeft.emit()
