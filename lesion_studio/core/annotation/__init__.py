"""Qt-free annotation model: label and location maps, lesion table, history, files, autosave.

Widgets stay thin: they forward mouse events to `BrushStroke` / document methods, subscribe to
`doc.events` and redraw the reported bbox.
"""

from lesion_studio.core.annotation.classes import DEFAULT_CLASSES, ORIGINS, LesionClass, LesionMeta
from lesion_studio.core.annotation.autosave import AutosaveJob, AutosaveStore, Recovery
from lesion_studio.core.annotation.document import AnnotationDocument, DocumentSnapshot
from lesion_studio.core.annotation.events import AnnotationEvent, EventEmitter
from lesion_studio.core.annotation.geometry import brush_radii_px
from lesion_studio.core.annotation.history import History, HistoryEntry, Patch
from lesion_studio.core.annotation.mask_io import export_layer, import_mask, load_mask, save_mask
from lesion_studio.core.annotation.session import SessionState, load_session, save_session
from lesion_studio.core.annotation.stroke import BrushStroke
from lesion_studio.core.annotation.table import LesionRecord

__all__ = [
    "DEFAULT_CLASSES",
    "ORIGINS",
    "AnnotationDocument",
    "AnnotationEvent",
    "AutosaveJob",
    "AutosaveStore",
    "BrushStroke",
    "DocumentSnapshot",
    "EventEmitter",
    "History",
    "HistoryEntry",
    "LesionClass",
    "LesionMeta",
    "LesionRecord",
    "Patch",
    "Recovery",
    "SessionState",
    "brush_radii_px",
    "export_layer",
    "import_mask",
    "load_mask",
    "load_session",
    "save_mask",
    "save_session",
]
