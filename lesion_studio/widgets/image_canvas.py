"""The image canvas: a pyqtgraph view with zoom at the cursor, pan, fit, 1:1 and W/L drag.

It only renders planes it is handed and reports what the user does (cursor position,
window drags, slice wheel steps) as signals; the controller owns the state.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QPainterPath, QTransform
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPathItem, QVBoxLayout, QWidget

#: Right-drag sensitivity: one screen pixel moves the window by this fraction of its width.
WINDOW_DRAG_FRACTION_PER_PX = 1.0 / 256.0


class _CanvasViewBox(pg.ViewBox):
    """ViewBox where left-drag pans (or drives the active tool), middle-drag always pans, the
    wheel zooms at the cursor, right-drag sets W/L and Ctrl/Shift + wheel steps slices."""

    windowDragged = Signal(float, float)  # screen dx, dy since the last event
    sliceWheel = Signal(int)
    toolDrag = Signal(str, QPointF, int)  # phase (press/move/release), scene position, modifiers
    toolClick = Signal(QPointF, int)  # scene position, modifiers

    def __init__(self) -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.setMouseMode(pg.ViewBox.PanMode)
        self.tool_active = False

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.screenPos() - ev.lastScreenPos()
            self.windowDragged.emit(float(delta.x()), float(delta.y()))
            return
        if ev.button() == Qt.MouseButton.LeftButton and self.tool_active:
            ev.accept()
            mods = int(ev.modifiers().value)
            if ev.isStart():
                self.toolDrag.emit("press", QPointF(ev.buttonDownScenePos()), mods)
            self.toolDrag.emit("move", QPointF(ev.scenePos()), mods)
            if ev.isFinish():
                self.toolDrag.emit("release", QPointF(ev.scenePos()), mods)
            return
        if ev.button() == Qt.MouseButton.MiddleButton:
            # Pan with the middle button whatever the tool (ViewBox pans left-drag only in PanMode).
            ev.accept()
            delta = self.mapToView(ev.lastPos()) - self.mapToView(ev.pos())
            self.translateBy(x=delta.x(), y=delta.y())
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton and self.tool_active:
            ev.accept()
            self.toolClick.emit(QPointF(ev.scenePos()), int(ev.modifiers().value))
            return
        super().mouseClickEvent(ev)

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
    toolPressed = Signal(float, float, int)  # row, col, keyboard modifiers
    toolMoved = Signal(float, float, int)
    toolReleased = Signal(float, float, int)
    toolClicked = Signal(float, float, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # pyqtgraph drops (not merges) move events above 100/s by default: a lasso would lose
        # vertices. Qt already compresses moves per frame and redraws are coalesced here.
        pg.setConfigOption("mouseRateLimit", 0)
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
        self.view_box.toolDrag.connect(self._on_tool_drag)
        self.view_box.toolClick.connect(self._on_tool_click)
        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.setMouseTracking(True)
        self._press_modifiers = 0
        self.view.viewport().installEventFilter(self)

        # Tool feedback drawn in image pixel coordinates (children follow the aspect transform).
        self.brush_outline = self.feedback_item(QGraphicsEllipseItem, "#ffffff", z=20)
        self.lasso_path = self.feedback_item(QGraphicsPathItem, "#ffd54a", z=20, dashed=True, visible=True)

    def feedback_item(self, item_class, color: str, *, z: float, width: float = 1.5,
                      dashed: bool = False, visible: bool = False):
        """A path/shape item in image pixel coordinates with a screen-width pen (outlines, crops)."""
        item = item_class(self.image_item)
        style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
        item.setPen(pg.mkPen(color, width=width, cosmetic=True, style=style))
        item.setZValue(z)
        item.setVisible(visible)
        return item

    # ---------------------------------------------------------------- tools

    def set_tool_active(self, active: bool) -> None:
        """Left-drag drives the painting tool instead of panning (middle-drag still pans)."""
        self.view_box.tool_active = active
        self.view.viewport().setCursor(Qt.CursorShape.CrossCursor if active else Qt.CursorShape.ArrowCursor)

    def add_overlay(self, item: pg.ImageItem, z: float) -> None:
        """Draw `item` over the image in the same pixel coordinates."""
        item.setParentItem(self.image_item)
        item.setZValue(z)

    def show_brush_outline(self, row: float, col: float, radius_rows: float, radius_cols: float) -> None:
        """The brush's true footprint (an ellipse when the spacing is anisotropic)."""
        self.brush_outline.setRect(QRectF(col - radius_cols, row - radius_rows, 2 * radius_cols, 2 * radius_rows))
        self.brush_outline.setVisible(True)

    def hide_brush_outline(self) -> None:
        self.brush_outline.setVisible(False)

    def set_lasso(self, points_rc: list[tuple[float, float]]) -> None:
        path = QPainterPath()
        if points_rc:
            path.moveTo(points_rc[0][1], points_rc[0][0])
            for r, c in points_rc[1:]:
                path.lineTo(c, r)
        self.lasso_path.setPath(path)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        """Remember the modifiers held at press: a drag's first event reports the move's."""
        if event.type() == QEvent.Type.MouseButtonPress:
            self._press_modifiers = int(event.modifiers().value)
        return False

    def _on_tool_drag(self, phase: str, scene_pos: QPointF, mods: int) -> None:
        if phase == "press":
            mods |= self._press_modifiers
        row, col = self.scene_to_pixel(scene_pos)
        {"press": self.toolPressed, "move": self.toolMoved, "release": self.toolReleased}[phase].emit(row, col, mods)

    def _on_tool_click(self, scene_pos: QPointF, mods: int) -> None:
        row, col = self.scene_to_pixel(scene_pos)
        self.toolClicked.emit(row, col, mods)

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
