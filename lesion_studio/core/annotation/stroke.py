"""`BrushStroke`: one press-move-release brush or eraser stroke as one transaction.

The canvas forwards its mouse events here (napari's labels mouse bindings: history saved once
per stroke, points interpolated between events, refresh once per event):

    stroke = BrushStroke(doc, label=7, radius_mm=2.0, slice=current_slice)
    stroke.press((row, col))      # on mouse press
    stroke.move((row, col))       # on every mouse move: paints the segment from the last point
    stroke.release()              # on release: one undo step, lesion table refreshed
"""

from __future__ import annotations

from lesion_studio.core.annotation.document import AnnotationDocument
from lesion_studio.core.annotation.geometry import BBox, brush_radii_px


class BrushStroke:
    """Paints (or erases, `erase=True`) the gap-free path of the mouse during one stroke."""

    def __init__(
        self,
        doc: AnnotationDocument,
        *,
        label: int = 0,
        erase: bool = False,
        radius_px: float | None = None,
        radius_mm: float | None = None,
        slice: int = 0,
        layer: str = "labels",
        preserve_other: bool = False,
        only_label: int | None = None,
    ) -> None:
        """`label` is the id to paint (1 on the location layer); `only_label` limits erasing."""
        if not erase and label <= 0:
            raise ValueError("a brush stroke needs a label > 0 (use erase=True to erase)")
        brush_radii_px(radius_px, radius_mm, doc.plane_spacing_mm)  # fail early, before press
        self.doc = doc
        self.erase = erase
        self.label = int(label)
        self._radius = {"radius_px": radius_px, "radius_mm": radius_mm}
        self.slice = slice
        self.layer = layer
        self.preserve_other = preserve_other
        self.only_label = only_label
        self._last: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return self._last is not None

    def press(self, point_rc: tuple[float, float]) -> BBox | None:
        """Open the transaction and stamp the brush at `point_rc`."""
        if self._last is not None:
            raise RuntimeError("press() twice without release()")
        point = (float(point_rc[0]), float(point_rc[1]))
        self.doc.begin("eraser" if self.erase else "brush")
        try:
            bbox = self._segment(point, point)
        except BaseException:
            if self.doc.in_transaction:
                self.doc.abort()
            raise
        self._last = point
        return bbox

    def move(self, point_rc: tuple[float, float]) -> BBox | None:
        """Paint the segment from the previous point to `point_rc`; returns the changed bbox."""
        if self._last is None:
            raise RuntimeError("move() before press()")
        point = (float(point_rc[0]), float(point_rc[1]))
        try:
            bbox = self._segment(self._last, point)
        except BaseException:
            if not self.doc.in_transaction:  # the error aborted the whole stroke
                self._last = None
            raise
        self._last = point
        return bbox

    def release(self) -> None:
        """Commit: the whole stroke becomes one undo step."""
        if self._last is None:
            raise RuntimeError("release() before press()")
        self._last = None
        self.doc.commit()

    def cancel(self) -> None:
        """Abort the stroke (e.g. Escape): the document returns to its state before press."""
        if self._last is None:
            return
        self._last = None
        self.doc.abort()

    def _segment(self, p0: tuple[float, float], p1: tuple[float, float]) -> BBox | None:
        if self.erase:
            return self.doc.erase_segment(
                p0, p1, slice=self.slice, layer=self.layer, only_label=self.only_label, **self._radius
            )
        return self.doc.paint_segment(
            p0, p1, self.label, slice=self.slice, layer=self.layer,
            preserve_other=self.preserve_other, **self._radius,
        )
