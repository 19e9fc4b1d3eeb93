"""Wires painting: canvas mouse events → document edits; document events → overlay and table.

The document (`AnnotationDocument`) and the tool settings (`ToolState`) are Qt-free; this
controller only translates between them and the widgets.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from lesion_studio.core.annotation import AnnotationDocument, AnnotationEvent, BrushStroke, brush_radii_px
from lesion_studio.core.annotation.document import FillTooLarge
from lesion_studio.core.tool_state import SIZE_STEP_FACTOR, ToolState
from lesion_studio.core.view_state import ViewState
from lesion_studio.widgets.annotation_panel import AnnotationPanel
from lesion_studio.widgets.image_canvas import ImageCanvas
from lesion_studio.widgets.label_overlay import LabelOverlay
from lesion_studio.widgets.lesion_table import LesionTable

SHIFT = int(Qt.KeyboardModifier.ShiftModifier.value)
#: A flood fill may cover at most this fraction of the image (a click on open background is a
#: slip: filling the whole radiograph into one lesion helps nobody).
FILL_MAX_FRACTION = 0.25


def to_document_rc(row: float, col: float) -> tuple[float, float]:
    """Canvas coordinates (pixel i spans [i, i+1)) → document coordinates (centre at i)."""
    return row - 0.5, col - 0.5


class AnnotationController(QObject):
    """Owns the open image's annotation document and routes tools to it."""

    documentChanged = Signal(object)  # the new AnnotationDocument (or None)
    message = Signal(str)  # short user-facing notes for the status bar

    def __init__(
        self,
        view_state: ViewState,
        tools: ToolState,
        canvas: ImageCanvas,
        panel: AnnotationPanel,
        table: LesionTable,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.view_state = view_state
        self.tools = tools
        self.canvas = canvas
        self.panel = panel
        self.table = table
        self.doc: AnnotationDocument | None = None
        self.overlay = LabelOverlay()
        canvas.add_overlay(self.overlay.location_item, z=5)
        canvas.add_overlay(self.overlay.labels_item, z=10)
        self._stroke: BrushStroke | None = None
        self._lasso: list[tuple[float, float]] = []
        self._lasso_label = 0
        self._pending_bbox: tuple[int, int, int, int] | None = None
        self._pending_full = False
        self._table_dirty = False
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)  # once per event-loop pass, however many events
        self._refresh_timer.timeout.connect(self._flush_refresh)

        view_state.changed.connect(self._on_view_changed)
        tools.changed.connect(self._on_tools_changed)
        panel.settingsEdited.connect(self._on_settings_edited)
        panel.classChosen.connect(self.set_current_class)
        table.lesionSelected.connect(self._on_table_selection)
        table.deleteRequested.connect(self.delete_lesion)
        table.relabelRequested.connect(self.relabel_lesion)
        canvas.toolPressed.connect(self._on_press)
        canvas.toolMoved.connect(self._on_move)
        canvas.toolReleased.connect(self._on_release)
        canvas.toolClicked.connect(self._on_click)
        canvas.cursorMoved.connect(self._on_cursor)
        canvas.cursorLeft.connect(canvas.hide_brush_outline)
        panel.show_settings(tools.settings)

    # ------------------------------------------------------------------ documents

    def set_document(self, doc: AnnotationDocument | None) -> None:
        """Show another document (a new image, a loaded session or a recovery)."""
        if self._stroke is not None:
            self._stroke.cancel()
            self._stroke = None
        if self.doc is not None:
            self.doc.events.disconnect(self._on_doc_event)
        self.doc = doc
        if doc is None:
            self.overlay.clear()
            self.table.show_records([], 0)
        else:
            doc.events.connect(self._on_doc_event)
            self.panel.set_classes([(c.name, c.color_rgb) for c in doc.classes], doc.current_class)
            self.panel.set_mm_available(doc.plane_spacing_mm is not None)
            if doc.plane_spacing_mm is None and self.tools.settings.radius_unit == "mm":
                self.tools.update(radius_unit="px")
            self._request_refresh(full=True)
            self._table_dirty = True
        self.documentChanged.emit(doc)

    def _on_view_changed(self, kind: str) -> None:
        if kind == "image":
            image = self.view_state.image
            self.set_document(None if image is None else AnnotationDocument.for_image(image))
        elif kind == "slice":
            self._request_refresh(full=True)

    # ------------------------------------------------------------------ settings

    def _on_settings_edited(self, changes: dict) -> None:
        try:
            self.tools.update(**changes)
        except ValueError as exc:
            self.message.emit(str(exc))
            self.panel.show_settings(self.tools.settings)

    def _on_tools_changed(self, names: set[str]) -> None:
        settings = self.tools.settings
        self.panel.show_settings(settings)
        if "tool" in names:
            self.canvas.set_tool_active(settings.tool != "navigate")
            if settings.tool not in ("brush", "eraser"):
                self.canvas.hide_brush_outline()
            if settings.tool != "lasso":
                self._cancel_lasso()
        if names & {"opacity", "contour_only"}:
            self.overlay.contour_only = settings.contour_only
            self._request_refresh(full=True)
        if names & {"show_labels", "show_location"}:
            self.overlay.set_visible(settings.show_labels, settings.show_location)

    def set_tool(self, tool: str) -> None:
        self.tools.update(tool=tool)

    def grow_brush(self) -> None:
        self.tools.scale_radius(SIZE_STEP_FACTOR)

    def shrink_brush(self) -> None:
        self.tools.scale_radius(1.0 / SIZE_STEP_FACTOR)

    def toggle_overlays(self) -> None:
        settings = self.tools.settings
        visible = settings.show_labels or settings.show_location
        self.tools.update(show_labels=not visible, show_location=not visible)

    def set_current_class(self, name: str) -> None:
        if self.doc is not None and name:
            self.doc.current_class = name
            self.panel.set_classes([(c.name, c.color_rgb) for c in self.doc.classes], name)
            self._request_refresh(full=True)

    def set_class_by_index(self, index: int) -> None:
        if self.doc is not None and 0 <= index < len(self.doc.classes):
            self.set_current_class(self.doc.classes[index].name)

    # ------------------------------------------------------------------ commands

    def undo(self) -> None:
        self._cancel_lasso()  # an outline drawn before the undo no longer belongs to anything
        if self.doc is not None and self._stroke is None and not self.doc.undo():
            self.message.emit("Nothing to undo")

    def redo(self) -> None:
        self._cancel_lasso()
        if self.doc is not None and self._stroke is None and not self.doc.redo():
            self.message.emit("Nothing to redo")

    def _cancel_lasso(self) -> None:
        """Drop a lasso outline in progress (its release then fills nothing)."""
        if self._lasso:
            self._lasso = []
            self.canvas.set_lasso([])

    def _drop_stale_selection(self) -> None:
        """After undo/redo the selected lesion may be gone: select nothing rather than a ghost."""
        doc = self.doc
        if doc is not None and doc.selected_id and (
            doc.lesion_meta(doc.selected_id) is None or doc.lesion(doc.selected_id) is None
        ):
            doc.selected_id = 0

    def delete_lesion(self, label: int | None = None) -> None:
        if self.doc is None:
            return
        label = self.doc.selected_id if label is None else label
        if label and self.doc.lesion_meta(label) is not None:
            self.doc.delete_lesion(label)

    def relabel_lesion(self, label: int) -> None:
        if self.doc is not None and self.doc.lesion_meta(label) is not None:
            self.doc.set_lesion_class(label, self.doc.current_class)

    def _on_table_selection(self, label: int) -> None:
        if self.doc is not None:
            self.doc.selected_id = label

    # ------------------------------------------------------------------ mouse → tools

    def _radius_kwargs(self) -> dict[str, float]:
        return self.tools.settings.radius_kwargs()

    def _paint_label(self, mods: int, start_rc: tuple[float, float]) -> int:
        """Which lesion a new stroke paints: the one under the press point, the selected one
        with Shift, else a new lesion."""
        doc = self.doc
        assert doc is not None
        if self.tools.settings.target_layer == "location":
            return 1
        if mods & SHIFT and doc.selected_id and doc.lesion_meta(doc.selected_id) is not None:
            return doc.selected_id
        under = doc.lesion_at(self.view_state.slice_index, int(round(start_rc[0])), int(round(start_rc[1])))
        return under or doc.next_lesion_id()

    def _on_press(self, row: float, col: float, mods: int) -> None:
        if self.doc is None:
            return
        tool = self.tools.settings.tool
        rc = to_document_rc(row, col)
        settings = self.tools.settings
        try:
            if tool in ("brush", "eraser"):
                erase = tool == "eraser"
                label = 0 if erase else self._paint_label(mods, rc)
                only = self.doc.selected_id if erase and mods & SHIFT and self.doc.selected_id else None
                self._stroke = BrushStroke(
                    self.doc, label=label, erase=erase, slice=self.view_state.slice_index,
                    layer=settings.target_layer, preserve_other=settings.preserve_other and not erase,
                    only_label=only, **self._radius_kwargs(),
                )
                self._stroke.press(rc)
                if not erase and settings.target_layer == "labels":
                    self.doc.selected_id = label
            elif tool == "lasso":
                self._lasso = [rc]
                self._lasso_label = self._paint_label(mods, rc)
                self.canvas.set_lasso([(row, col)])
        except ValueError as exc:
            self._stroke = None
            self.message.emit(str(exc))

    def _on_move(self, row: float, col: float, mods: int) -> None:
        if self._stroke is not None:
            self._stroke.move(to_document_rc(row, col))
            self._on_cursor(row, col)
        elif self._lasso:
            self._lasso.append(to_document_rc(row, col))
            self.canvas.set_lasso([(r + 0.5, c + 0.5) for r, c in self._lasso])

    def _on_release(self, row: float, col: float, mods: int) -> None:
        if self._stroke is not None:
            stroke, self._stroke = self._stroke, None
            stroke.release()
        elif self._lasso:
            points, self._lasso = self._lasso, []
            self.canvas.set_lasso([])
            if len(points) >= 3 and self.doc is not None:
                settings = self.tools.settings
                self.doc.fill_polygon(
                    points, self._lasso_label, slice=self.view_state.slice_index,
                    layer=settings.target_layer, preserve_other=settings.preserve_other,
                )
                if settings.target_layer == "labels":
                    self.doc.selected_id = self._lasso_label

    def _on_click(self, row: float, col: float, mods: int) -> None:
        """A click without drag: a brush dot, a flood fill or a selection."""
        doc = self.doc
        if doc is None:
            return
        tool = self.tools.settings.tool
        rc = to_document_rc(row, col)
        pixel = (int(row), int(col))
        h, w = doc.plane_shape
        if not (0 <= pixel[0] < h and 0 <= pixel[1] < w):
            return
        slice_index = self.view_state.slice_index
        layer = self.tools.settings.target_layer
        if tool in ("brush", "eraser"):
            self._on_press(row, col, mods)
            self._on_release(row, col, mods)
        elif tool == "fill":
            if layer == "location":
                value = 1
            elif doc.selected_id and doc.lesion_meta(doc.selected_id) is not None:
                value = doc.selected_id
            else:
                value = doc.next_lesion_id()
            try:
                filled = doc.fill(pixel, value, slice=slice_index, layer=layer, max_fraction=FILL_MAX_FRACTION)
            except FillTooLarge as exc:
                self.message.emit(f"Fill refused: {exc}, more than {100 * FILL_MAX_FRACTION:.0f} %. "
                                  "Close the outline first (brush or lasso), then fill inside it.")
                return
            if filled is None:
                self.message.emit("Nothing to fill here")
            elif layer == "labels":
                doc.selected_id = value
        elif tool == "select":
            doc.selected_id = doc.lesion_at(slice_index, *pixel)
        del rc

    def _on_cursor(self, row: float, col: float) -> None:
        if self.doc is None or self.tools.settings.tool not in ("brush", "eraser"):
            return
        try:
            ry, rx = brush_radii_px(plane_spacing_mm=self.doc.plane_spacing_mm, **self._radius_kwargs())
        except ValueError:
            return
        # Outline of the pixels the brush covers: pixel centres within the radius.
        self.canvas.show_brush_outline(row, col, max(ry, 0.5) + 0.5, max(rx, 0.5) + 0.5)

    # ------------------------------------------------------------------ document → views

    def _on_doc_event(self, event: AnnotationEvent) -> None:
        if event.kind == "history":
            self._drop_stale_selection()
        elif event.kind == "pixels":
            if event.layer == "image":
                if event.slice == self.view_state.slice_index:
                    self.view_state.notify_pixels_changed()  # an accepted synthesis or its undo
                return
            if event.layer == "location" or event.slice != self.view_state.slice_index:
                if event.layer == "location" and event.slice == self.view_state.slice_index:
                    self._request_refresh(full=True)
                return
            self._request_refresh(bbox=event.bbox)
        elif event.kind in ("lesions", "classes", "selection"):
            if event.kind == "selection" and self.doc is not None:
                self.table.select(self.doc.selected_id)
            else:
                self._table_dirty = True
            self._request_refresh(full=True)
            if event.kind == "classes" and self.doc is not None:
                self.panel.set_classes([(c.name, c.color_rgb) for c in self.doc.classes], self.doc.current_class)

    def _request_refresh(self, bbox: tuple[int, int, int, int] | None = None, full: bool = False) -> None:
        if full or bbox is None:
            self._pending_full = True
        elif self._pending_bbox is None:
            self._pending_bbox = bbox
        else:
            a = self._pending_bbox
            self._pending_bbox = (min(a[0], bbox[0]), max(a[1], bbox[1]), min(a[2], bbox[2]), max(a[3], bbox[3]))
        self._refresh_timer.start()

    def flush(self) -> None:
        """Render pending changes now (tests and screenshots)."""
        self._refresh_timer.stop()
        self._flush_refresh()

    def _flush_refresh(self) -> None:
        doc = self.doc
        if doc is None:
            return
        slice_index = min(self.view_state.slice_index, doc.n_slices - 1)
        settings = self.tools.settings
        if self._pending_full:
            colors = {}
            for label in doc.lesion_ids:
                meta = doc.lesion_meta(label)
                if meta is not None:
                    colors[label] = doc.lesion_class(meta.class_name).color_rgb
            pending = doc.lesion_class(doc.current_class).color_rgb
            self.overlay.set_lut(colors, settings.opacity, doc.selected_id, pending)
            self.overlay.render_labels(doc.plane(slice_index, "labels"))
            self.overlay.render_location(doc.plane(slice_index, "location"), settings.opacity)
        elif self._pending_bbox is not None:
            self.overlay.render_labels(doc.plane(slice_index, "labels"), self._pending_bbox)
        self._pending_full = False
        self._pending_bbox = None
        if self._table_dirty and self._stroke is None:
            self._table_dirty = False
            self.table.show_records(doc.lesion_table(), doc.selected_id)
