"""A plain-Python observer: the document emits `AnnotationEvent`s, widgets subscribe.

No Qt here; a widget connects a callback that schedules its own repaint (napari's evented
models, without the Qt signal machinery).
"""

from __future__ import annotations

from dataclasses import dataclass

from lesion_studio.core.events import EventEmitter  # noqa: F401  (the document emits AnnotationEvents with it)

#: Event kinds:
#: - "pixels": a layer changed inside `bbox` on `slice` (each tool call, undo/redo, import).
#: - "lesions": lesion table rows `ids` changed, were added or removed.
#: - "classes": the list of lesion classes changed.
#: - "history": undo/redo availability may have changed.
#: - "selection": `AnnotationDocument.selected_id` changed (ids holds the new id).
#: An import replaces a whole layer and reports it as "pixels" with the full bbox per slice.
EVENT_KINDS = ("pixels", "lesions", "classes", "history", "selection")

BBox = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in pixels


@dataclass(frozen=True)
class AnnotationEvent:
    """What changed: `kind`, and for "pixels" the `layer` ("labels"/"location"), `slice`, `bbox`."""

    kind: str
    layer: str | None = None
    slice: int | None = None
    bbox: BBox | None = None
    ids: tuple[int, ...] = ()
