"""`AnnotationDocument`: the label map, location map, lesion classes and table of one image.

The document is the single owner of annotation state (napari's labels layer, without Qt):
tools call its painting methods, widgets read its arrays and subscribe to `doc.events`, and
undo/redo lives here. Every change happens inside a transaction; one transaction is one undo
step. A stroke opens one on mouse press, paints interpolated segments on each move and
commits on release (`BrushStroke` does exactly that); a single call outside a transaction
opens and commits its own.

Arrays:
- `labels`: `(H, W)` or `(slices, H, W)` uint16, 0 = background, one id per lesion instance.
- `location`: same shape, uint8 0/1, where lesions may be synthesized.
Both are exposed read-only in spirit: write through the document so history and table follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from lesion_studio.core.annotation.classes import DEFAULT_CLASSES, ORIGINS, LesionClass, LesionMeta
from lesion_studio.core.annotation.events import AnnotationEvent, EventEmitter
from lesion_studio.core.annotation.geometry import (
    BBox,
    brush_radii_px,
    flood_region,
    polygon_region,
    segment_region,
)
from lesion_studio.core.annotation.history import History, HistoryEntry, Patch, TileSnapshot
from lesion_studio.core.annotation.table import (
    LesionRecord,
    SliceStats,
    make_record,
    measure,
    measure_plane,
    union_bbox,
)

LAYERS = ("labels", "location")
MAX_LABEL = int(np.iinfo(np.uint16).max)

Geometry = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]


@dataclass
class _Transaction:
    name: str
    snapshot: TileSnapshot
    meta_before: dict[int, LesionMeta | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentSnapshot:
    """What a session file holds, copied: safe to write from a worker thread while painting goes on."""

    labels: np.ndarray  # (H, W) or (slices, H, W) uint16
    location: np.ndarray  # same shape, uint8 0/1
    spacing_mm: tuple[float, ...] | None
    geometry: Geometry | None
    classes: tuple[LesionClass, ...]
    current_class: str
    meta: dict[int, LesionMeta]
    revision: int
    uid: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.labels.shape)

    @property
    def is_volume(self) -> bool:
        return self.labels.ndim == 3



class FillTooLarge(ValueError):
    """A flood fill would cover more of the image than allowed (an unclosed outline)."""

    def __init__(self, n_pixels: int, fraction: float) -> None:
        super().__init__(f"the region is {n_pixels} px ({100 * fraction:.0f} % of the image)")
        self.n_pixels = n_pixels
        self.fraction = fraction

class AnnotationDocument:
    """Lesion masks of one 2D image or volume, with undo/redo, a lesion table and events."""

    def __init__(
        self,
        shape: Sequence[int],
        spacing_mm: Sequence[float] | None = None,
        *,
        geometry: Geometry | None = None,
        classes: Sequence[LesionClass] = DEFAULT_CLASSES,
        max_history: int = 200,
        max_history_bytes: int = 512 * 2**20,
        tile_px: int = 64,
    ) -> None:
        """`shape` is `(H, W)` or `(slices, H, W)`; `spacing_mm` per array axis or None.

        `geometry` is the source image's SimpleITK `(spacing_xyz, origin_xyz, direction)`,
        kept so that NIfTI exports overlay the image; `tile_px` is the history tile size.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"shape must be (H, W) or (slices, H, W), got {shape}")
        if spacing_mm is not None:
            spacing_mm = tuple(float(s) for s in spacing_mm)
            if len(spacing_mm) != len(shape) or min(spacing_mm) <= 0:
                raise ValueError(f"spacing_mm {spacing_mm} does not fit shape {shape}")
        self._shape = shape
        self.spacing_mm: tuple[float, ...] | None = spacing_mm
        self.geometry: Geometry | None = geometry
        shape3 = shape if len(shape) == 3 else (1,) + shape
        self._labels = np.zeros(shape3, dtype=np.uint16)
        self._location = np.zeros(shape3, dtype=np.uint8)
        self._planes = {"labels": self._labels, "location": self._location}
        self._classes: dict[str, LesionClass] = {c.name: c for c in classes}
        if not self._classes:
            raise ValueError("a document needs at least one lesion class")
        self.current_class: str = next(iter(self._classes))
        self._meta: dict[int, LesionMeta] = {}
        self._stats: dict[int, dict[int, SliceStats]] = {}
        self._selected_id = 0
        self._tile_px = int(tile_px)
        self._txn: _Transaction | None = None
        self._depth = 0
        self.history = History(max_steps=max_history, max_bytes=max_history_bytes)
        self.events = EventEmitter()
        self.revision = 0  # bumped on every content change (commit, undo, redo, classes)
        self.uid = uuid.uuid4().hex  # tells documents apart (autosave's "dirty" check)

    @classmethod
    def for_image(cls, image, **kwargs) -> "AnnotationDocument":
        """An empty document shaped like a `MedicalImage`, keeping its spacing and geometry."""
        return cls(image.shape, image.spacing_mm, geometry=image.sitk_geometry(), **kwargs)

    # ------------------------------------------------------------------ shape and arrays

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def is_volume(self) -> bool:
        return len(self._shape) == 3

    @property
    def n_slices(self) -> int:
        return self._labels.shape[0]

    @property
    def plane_shape(self) -> tuple[int, int]:
        return (self._labels.shape[1], self._labels.shape[2])

    @property
    def plane_spacing_mm(self) -> tuple[float, float] | None:
        """`(row_mm, col_mm)` of a plane, or None when the spacing is unknown."""
        if self.spacing_mm is None:
            return None
        return (self.spacing_mm[-2], self.spacing_mm[-1])

    @property
    def labels(self) -> np.ndarray:
        """The label map, `(H, W)` or `(slices, H, W)` uint16. Do not write into it."""
        return self._labels if self.is_volume else self._labels[0]

    @property
    def location(self) -> np.ndarray:
        """The location map, same shape as `labels`, uint8 0/1. Do not write into it."""
        return self._location if self.is_volume else self._location[0]

    def plane(self, slice: int = 0, layer: str = "labels") -> np.ndarray:
        """One `(H, W)` plane of a layer (a view)."""
        return self._layer(layer)[self._check_slice(slice)]

    def lesion_at(self, slice: int, row: int, col: int) -> int:
        """The lesion id under pixel `(row, col)` of `slice`, 0 for background or outside."""
        h, w = self.plane_shape
        if not (0 <= row < h and 0 <= col < w):
            return 0
        return int(self._labels[self._check_slice(slice), row, col])

    # ------------------------------------------------------------------ transactions

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def begin(self, name: str) -> None:
        """Open a transaction (nested calls join the outermost one)."""
        if self._txn is None:
            self._txn = _Transaction(name, TileSnapshot(self._tile_px))
        self._depth += 1

    def commit(self) -> HistoryEntry | None:
        """Close a transaction; the outermost commit records one undo step (if anything changed)."""
        if self._txn is None:
            raise RuntimeError("commit() without begin()")
        self._depth -= 1
        if self._depth > 0:
            return None
        txn = self._txn
        patches = txn.snapshot.patches(self._planes)
        touched = self._refresh_stats(patches)
        for label in sorted(touched):
            if label in self._stats and label not in self._meta:
                self._set_meta(label, LesionMeta(self.current_class, "drawn"))
            elif label not in self._stats and label in self._meta:
                self._set_meta(label, None)  # erased completely: drop it from the table
        self._txn = None
        meta_after = {k: self._meta.get(k) for k in txn.meta_before}
        entry = HistoryEntry(txn.name, patches, dict(txn.meta_before), meta_after)
        if entry.is_empty:
            return None
        self.history.push(entry)
        self.revision += 1
        self._emit_lesions(touched | set(txn.meta_before))
        self.events.emit(AnnotationEvent("history"))
        return entry

    def abort(self) -> None:
        """Cancel the whole open transaction: pixels and metadata go back to before `begin`."""
        if self._txn is None:
            raise RuntimeError("abort() without begin()")
        txn = self._txn
        patches = txn.snapshot.patches(self._planes)
        txn.snapshot.restore(self._planes)
        for label, meta in txn.meta_before.items():
            self._put_meta(label, meta)
        self._txn = None
        self._depth = 0
        touched = self._refresh_stats(patches)
        self._emit_pixels(patches)
        self._emit_lesions(touched | set(txn.meta_before))

    @contextmanager
    def transaction(self, name: str) -> Iterator["AnnotationDocument"]:
        """`with doc.transaction("brush"): ...`: one undo step; an exception aborts it."""
        self.begin(name)
        try:
            yield self
        except BaseException:
            if self._txn is not None:  # an inner block may have aborted the whole transaction
                self.abort()
            raise
        self.commit()

    # ------------------------------------------------------------------ undo / redo

    @property
    def can_undo(self) -> bool:
        return self.history.can_undo

    @property
    def can_redo(self) -> bool:
        return self.history.can_redo

    def undo(self) -> bool:
        """Revert the last stroke or command; False when there is nothing to undo."""
        return self._step(self.history.pop_undo, before=True)

    def redo(self) -> bool:
        """Re-apply the last undone step; False when there is nothing to redo."""
        return self._step(self.history.pop_redo, before=False)

    def _step(self, pop, before: bool) -> bool:
        if self._txn is not None:
            raise RuntimeError("cannot undo or redo while a transaction is open")
        entry = pop()
        if entry is None:
            return False
        for patch in entry.patches:
            block = patch.before if before else patch.after
            r0, r1, c0, c1 = patch.bbox
            self._planes[patch.layer][patch.slice, r0:r1, c0:c1] = block.array()
        for label, meta in (entry.meta_before if before else entry.meta_after).items():
            self._put_meta(label, meta)
        touched = self._refresh_stats(entry.patches)
        self.revision += 1
        self._emit_pixels(entry.patches)
        self._emit_lesions(touched | set(entry.meta_before))
        self.events.emit(AnnotationEvent("history"))
        return True

    # ------------------------------------------------------------------ painting

    def paint_segment(
        self,
        p0: tuple[float, float],
        p1: tuple[float, float],
        label: int,
        *,
        radius_px: float | None = None,
        radius_mm: float | None = None,
        slice: int = 0,
        layer: str = "labels",
        preserve_other: bool = False,
    ) -> BBox | None:
        """Paint `label` with a round brush moved from `p0` to `p1` (`(row, col)`, pixels).

        The swept area is filled without gaps however far apart the points are. With
        `preserve_other` the brush writes only over background and `label` itself. On the
        location layer `label` must be 1. Returns the changed bbox, or None.
        """
        value = self._check_value(layer, label, allow_zero=False)
        radii = brush_radii_px(radius_px, radius_mm, self.plane_spacing_mm)
        region = segment_region(p0, p1, radii, self.plane_shape)
        with self.transaction("brush"):
            return self._write(layer, slice, region, value, keep_others=preserve_other)

    def erase_segment(
        self,
        p0: tuple[float, float],
        p1: tuple[float, float],
        *,
        radius_px: float | None = None,
        radius_mm: float | None = None,
        slice: int = 0,
        layer: str = "labels",
        only_label: int | None = None,
    ) -> BBox | None:
        """Erase with a round brush from `p0` to `p1`; `only_label` erases that lesion only."""
        radii = brush_radii_px(radius_px, radius_mm, self.plane_spacing_mm)
        region = segment_region(p0, p1, radii, self.plane_shape)
        with self.transaction("eraser"):
            return self._write(layer, slice, region, 0, only=only_label)

    def fill(
        self, seed_rc: tuple[int, int], label: int, *, slice: int = 0, layer: str = "labels",
        max_fraction: float | None = None,
    ) -> BBox | None:
        """Flood fill: the 4-connected region holding the seed's value becomes `label` (0 erases).

        `max_fraction`: a region larger than this fraction of the plane is refused with
        `FillTooLarge` (a click on open background would otherwise fill the whole image)."""
        value = self._check_value(layer, label, allow_zero=True)
        plane = self._layer(layer)[self._check_slice(slice)]
        region = flood_region(plane, seed_rc)
        if region is None or plane[int(seed_rc[0]), int(seed_rc[1])] == value:
            return None
        n_pixels = int(region[1].sum())
        if max_fraction is not None and n_pixels > max_fraction * plane.size:
            raise FillTooLarge(n_pixels, n_pixels / plane.size)
        with self.transaction("fill"):
            return self._write(layer, slice, region, value)

    def fill_polygon(
        self,
        points_rc: Sequence[tuple[float, float]] | np.ndarray,
        label: int,
        *,
        slice: int = 0,
        layer: str = "labels",
        preserve_other: bool = False,
    ) -> BBox | None:
        """Lasso: fill the closed polygon with vertices `(row, col)` with `label` (0 erases)."""
        value = self._check_value(layer, label, allow_zero=True)
        region = polygon_region(points_rc, self.plane_shape)
        with self.transaction("lasso"):
            return self._write(layer, slice, region, value, keep_others=preserve_other)

    def _write(
        self,
        layer: str,
        slice: int,
        region: tuple[BBox, np.ndarray] | None,
        value: int,
        *,
        keep_others: bool = False,
        only: int | None = None,
    ) -> BBox | None:
        if region is None:
            return None
        plane = self._layer(layer)[self._check_slice(slice)]
        (r0, r1, c0, c1), mask = region
        view = plane[r0:r1, c0:c1]
        if keep_others and value != 0:
            mask = mask & ((view == 0) | (view == value))
        elif keep_others:
            mask = mask & (view == 0)
        if only is not None:
            mask = mask & (view == only)
        mask &= view != value
        if not mask.any():
            return None
        self._txn.snapshot.touch(layer, slice, plane, (r0, r1, c0, c1))
        view[mask] = value
        bbox = (r0, r1, c0, c1)
        self.events.emit(AnnotationEvent("pixels", layer=layer, slice=slice, bbox=bbox))
        return bbox

    def replace_layer(
        self,
        array: np.ndarray,
        *,
        layer: str = "labels",
        meta: dict[int, LesionMeta] | None = None,
        name: str = "import",
    ) -> None:
        """Replace a whole layer (an imported mask) as one undoable step.

        For the labels layer `meta` gives the class and origin of the new ids; ids without an
        entry get the current class and origin "imported". Previous lesions are dropped.
        """
        array = np.asarray(array)
        if array.shape != self._shape:
            raise ValueError(f"array shape {array.shape} differs from the document's {self._shape}")
        array3 = array.reshape(self._labels.shape)
        if layer == "labels":
            if array3.size and (array3.min() < 0 or array3.max() > MAX_LABEL):
                raise ValueError("label ids must be within 0..65535")
        elif not np.isin(array3, (0, 1)).all():
            raise ValueError("the location map holds only 0 and 1")
        target = self._layer(layer)
        with self.transaction(name):
            for s in range(self.n_slices):
                self._txn.snapshot.touch(layer, s, target[s], (0, target.shape[1], 0, target.shape[2]))
            target[...] = array3
            if layer == "labels":
                for label in list(self._meta):
                    self._set_meta(label, None)
                self._rebuild_stats()
                meta = meta or {}
                for label in self._stats:
                    self._set_meta(label, meta.get(label, LesionMeta(self.current_class, "imported")))
            for s in range(self.n_slices):
                self.events.emit(
                    AnnotationEvent("pixels", layer=layer, slice=s, bbox=(0, target.shape[1], 0, target.shape[2]))
                )

    # ------------------------------------------------------------------ lesions

    def next_lesion_id(self) -> int:
        """The id `new_lesion` would allocate: one above every id in use."""
        used = max(self._meta, default=0)
        used = max(used, max(self._stats, default=0))
        if self._txn is not None and self._txn.snapshot.tiles:
            self._refresh_pending()
            used = max(used, max(self._stats, default=0))
        if used >= MAX_LABEL:
            raise ValueError("no lesion id left (65535 in use)")
        return used + 1

    def new_lesion(self, class_name: str | None = None, origin: str = "drawn") -> int:
        """Allocate a new lesion id with its class and origin (undoable); returns the id."""
        class_name = self.current_class if class_name is None else class_name
        self._check_class(class_name)
        label = self.next_lesion_id()
        with self.transaction("new lesion"):
            self._set_meta(label, LesionMeta(class_name, origin))
        return label

    def set_lesion_class(self, label: int, class_name: str) -> None:
        """Change a lesion's class (undoable)."""
        self._check_class(class_name)
        meta = self._require_meta(label)
        with self.transaction("change class"):
            self._set_meta(label, LesionMeta(class_name, meta.origin))

    def set_lesion_origin(self, label: int, origin: str) -> None:
        """Change a lesion's origin (undoable)."""
        meta = self._require_meta(label)
        with self.transaction("change origin"):
            self._set_meta(label, LesionMeta(meta.class_name, origin))

    def delete_lesion(self, label: int) -> None:
        """Remove a lesion's pixels on every slice and its table row (undoable)."""
        self._require_meta(label)
        with self.transaction("delete lesion"):
            self._refresh_pending()
            for s, stats in list(self._stats.get(label, {}).items()):
                bbox, plane = stats.bbox, self._labels[s]
                view = plane[bbox[0] : bbox[1], bbox[2] : bbox[3]]
                self._write("labels", s, (bbox, view == label), 0)
            self._set_meta(label, None)
        if self._selected_id == label:
            self.selected_id = 0

    def lesion_meta(self, label: int) -> LesionMeta | None:
        return self._meta.get(label)

    @property
    def lesion_ids(self) -> tuple[int, ...]:
        """Ids with metadata (every lesion with pixels, plus new ones not painted yet)."""
        return tuple(sorted(self._meta))

    def lesion(self, label: int) -> LesionRecord | None:
        """The table row of one lesion; None when it has no pixels."""
        if self._txn is not None:
            self._refresh_pending()
        return self._record(label)

    def _record(self, label: int) -> LesionRecord | None:
        per_slice = self._stats.get(label)
        if not per_slice:
            return None
        meta = self._meta.get(label) or LesionMeta(self.current_class, "drawn")
        color = self._classes.get(meta.class_name, next(iter(self._classes.values()))).color_rgb
        return make_record(label, meta.class_name, meta.origin, color, per_slice, self.plane_spacing_mm)

    def lesion_table(self) -> list[LesionRecord]:
        """Every lesion with pixels, by id. Cheap: rows come from incrementally kept stats."""
        if self._txn is not None:
            self._refresh_pending()
        rows = (self._record(label) for label in sorted(self._stats))
        return [row for row in rows if row is not None]

    @property
    def selected_id(self) -> int:
        """The lesion selected in the table/canvas (0 = none); view state, not undoable."""
        return self._selected_id

    @selected_id.setter
    def selected_id(self, label: int) -> None:
        label = int(label)
        if label != self._selected_id:
            self._selected_id = label
            self.events.emit(AnnotationEvent("selection", ids=(label,)))

    # ------------------------------------------------------------------ working image

    def attach_image(self, pixels: np.ndarray) -> None:
        """Put the working copy of the image (float32, the document's shape) under this
        document's undo history, so an accepted synthesis — new pixels plus its mask — is one
        undo step. The array is shared, not copied: `write_image` and undo edit it in place.
        """
        if tuple(pixels.shape) != self._shape:
            raise ValueError(f"image {pixels.shape} does not fit the document {self._shape}")
        view = pixels.reshape(self._labels.shape)
        if not np.shares_memory(view, pixels):
            raise ValueError("the working image must be a contiguous array (edited in place)")
        current = self._planes.get("image")
        if current is not None and np.shares_memory(current, view):
            return
        if self._txn is not None:
            raise RuntimeError("cannot attach an image while a transaction is open")
        self._planes["image"] = view

    def write_image(self, slice: int, bbox: BBox, values: np.ndarray) -> BBox:
        """Replace the attached image's pixels inside `bbox` (undoable with the open transaction)."""
        plane = self._planes.get("image")
        if plane is None:
            raise RuntimeError("attach_image() first: there is no working image to edit")
        r0, r1, c0, c1 = (int(v) for v in bbox)
        values = np.asarray(values, dtype=plane.dtype)
        if values.shape != (r1 - r0, c1 - c0):
            raise ValueError(f"values {values.shape} do not fit the bbox {bbox}")
        with self.transaction("edit image"):
            target = plane[self._check_slice(slice)]
            self._txn.snapshot.touch("image", slice, target, (r0, r1, c0, c1))
            target[r0:r1, c0:c1] = values
        self.events.emit(AnnotationEvent("pixels", layer="image", slice=slice, bbox=(r0, r1, c0, c1)))
        return (r0, r1, c0, c1)

    def paint_mask(self, mask: np.ndarray, label: int, *, slice: int = 0, layer: str = "labels") -> BBox | None:
        """Set every pixel of a full-plane bool `mask` to `label` (0 erases); one undo step."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.plane_shape:
            raise ValueError(f"mask {mask.shape} differs from the plane {self.plane_shape}")
        value = self._check_value(layer, label, allow_zero=True)
        if not mask.any():
            return None
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        bbox = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        region = (bbox, mask[bbox[0] : bbox[1], bbox[2] : bbox[3]])
        with self.transaction("paint mask"):
            return self._write(layer, slice, region, value)

    def set_lesion_meta(self, label: int, meta: LesionMeta) -> None:
        """Set a lesion's whole metadata (class, origin, provenance); undoable."""
        self._check_class(meta.class_name)
        with self.transaction("lesion metadata"):
            self._set_meta(label, meta)

    # ------------------------------------------------------------------ classes

    @property
    def classes(self) -> tuple[LesionClass, ...]:
        return tuple(self._classes.values())

    def lesion_class(self, name: str) -> LesionClass:
        self._check_class(name)
        return self._classes[name]

    def add_class(self, name: str, color_rgb: tuple[int, int, int]) -> LesionClass:
        """Add (or recolour) a user-defined lesion class."""
        if not name.strip():
            raise ValueError("a lesion class needs a name")
        r, g, b = (int(v) for v in color_rgb)
        if not all(0 <= v <= 255 for v in (r, g, b)):
            raise ValueError(f"colour components must be 0-255, got {color_rgb}")
        cls = LesionClass(name, (r, g, b))
        self._classes[name] = cls
        self.revision += 1
        self.events.emit(AnnotationEvent("classes"))
        return cls

    def label_colors(self, alpha: int = 128) -> np.ndarray:
        """A `(max id + 1, 4)` uint8 RGBA lookup table: each id in its class colour, 0 clear.

        Index the label plane with it (`lut[plane]`) or hand it to an image item as its LUT.
        """
        ids = set(self._meta) | set(self._stats)
        lut = np.zeros((max(ids, default=0) + 1, 4), dtype=np.uint8)
        fallback = self._classes.get(self.current_class) or next(iter(self._classes.values()))
        for label in ids:
            meta = self._meta.get(label)
            cls = self._classes.get(meta.class_name, fallback) if meta else fallback
            lut[label] = (*cls.color_rgb, alpha)
        return lut

    # ------------------------------------------------------------------ saving and loading

    def snapshot(self, copy: bool = True) -> DocumentSnapshot:
        """The saved state of the document; `copy=False` shares the arrays (same-thread writes).

        Call it outside a transaction (between strokes) so no half stroke is captured.
        """
        labels, location = self.labels, self.location
        if copy:
            labels, location = labels.copy(), location.copy()
        return DocumentSnapshot(
            labels=labels,
            location=location,
            spacing_mm=self.spacing_mm,
            geometry=self.geometry,
            classes=self.classes,
            current_class=self.current_class,
            meta=dict(self._meta),
            revision=self.revision,
            uid=self.uid,
        )

    @classmethod
    def from_arrays(
        cls,
        labels: np.ndarray,
        location: np.ndarray | None = None,
        *,
        spacing_mm: Sequence[float] | None = None,
        geometry: Geometry | None = None,
        classes: Sequence[LesionClass] = DEFAULT_CLASSES,
        meta: dict[int, LesionMeta] | None = None,
        **kwargs,
    ) -> "AnnotationDocument":
        """A document holding given maps (loading a session), with empty history."""
        labels = np.asarray(labels)
        doc = cls(labels.shape, spacing_mm, geometry=geometry, classes=classes, **kwargs)
        if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
            raise ValueError("label ids must be within 0..65535")
        doc._labels[...] = labels.reshape(doc._labels.shape)
        if location is not None:
            location = np.asarray(location)
            if location.shape != labels.shape:
                raise ValueError(f"location map {location.shape} differs from labels {labels.shape}")
            doc._location[...] = (location.reshape(doc._location.shape) != 0)
        doc._rebuild_stats()
        meta = meta or {}
        for label, m in meta.items():
            doc._meta[int(label)] = m
        for label in doc._stats:
            doc._meta.setdefault(label, LesionMeta(doc.current_class, "imported"))
        for m in doc._meta.values():
            if m.class_name not in doc._classes:
                doc._classes[m.class_name] = LesionClass(m.class_name, (200, 200, 200))
        return doc

    # ------------------------------------------------------------------ internals

    def _layer(self, layer: str) -> np.ndarray:
        try:
            return self._planes[layer]
        except KeyError:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}") from None

    def _check_slice(self, slice: int) -> int:
        if not 0 <= slice < self.n_slices:
            raise IndexError(f"slice {slice} outside 0..{self.n_slices - 1}")
        return slice

    def _check_value(self, layer: str, value: int, allow_zero: bool) -> int:
        value = int(value)
        if layer == "location":
            ok = value in ((0, 1) if allow_zero else (1,))
            if not ok:
                raise ValueError(f"the location map takes 1 (or 0 to erase), got {value}")
        elif not (0 if allow_zero else 1) <= value <= MAX_LABEL:
            raise ValueError(f"label must be within 1..{MAX_LABEL}, got {value}")
        self._layer(layer)
        return value

    def _check_class(self, name: str) -> None:
        if name not in self._classes:
            raise ValueError(f"unknown lesion class {name!r}; known: {', '.join(self._classes)}")

    def _require_meta(self, label: int) -> LesionMeta:
        meta = self._meta.get(label)
        if meta is None:
            raise KeyError(f"no lesion with id {label}")
        return meta

    def _set_meta(self, label: int, meta: LesionMeta | None) -> None:
        """Change metadata inside the open transaction, remembering the old value once."""
        if meta is not None and meta.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}")
        txn = self._txn
        if txn is None:
            raise RuntimeError("metadata changes need an open transaction")
        if label not in txn.meta_before:
            txn.meta_before[label] = self._meta.get(label)
        self._put_meta(label, meta)

    def _put_meta(self, label: int, meta: LesionMeta | None) -> None:
        if meta is None:
            self._meta.pop(label, None)
        else:
            self._meta[label] = meta

    def _refresh_stats(self, patches: list[Patch]) -> set[int]:
        """Recompute the stats of lesions in label patches, inside their old bbox + the patch."""
        regions: dict[tuple[int, int], BBox] = {}
        for patch in patches:
            if patch.layer != "labels":
                continue
            ids = np.union1d(patch.before.values(), patch.after.values())
            for label in ids[ids != 0].tolist():
                key = (patch.slice, label)
                regions[key] = union_bbox(regions.get(key), patch.bbox)
        for (s, label), region in regions.items():
            per_slice = self._stats.setdefault(label, {})
            old = per_slice.get(s)
            stats = measure(self._labels[s], label, union_bbox(region, old.bbox if old else None))
            if stats is None:
                per_slice.pop(s, None)
                if not per_slice:
                    del self._stats[label]
            else:
                per_slice[s] = stats
        return {label for _, label in regions}

    def _refresh_pending(self) -> None:
        """Bring the table up to date in the middle of a transaction (stats only)."""
        self._refresh_stats(self._txn.snapshot.patches(self._planes))

    def _rebuild_stats(self) -> None:
        self._stats = {}
        for s in range(self.n_slices):
            for label, stats in measure_plane(self._labels[s]).items():
                self._stats.setdefault(label, {})[s] = stats

    def _emit_pixels(self, patches: list[Patch]) -> None:
        merged: dict[tuple[str, int], BBox] = {}
        for patch in patches:
            key = (patch.layer, patch.slice)
            merged[key] = union_bbox(merged.get(key), patch.bbox)
        for (layer, s), bbox in merged.items():
            self.events.emit(AnnotationEvent("pixels", layer=layer, slice=s, bbox=bbox))

    def _emit_lesions(self, ids: set[int]) -> None:
        if ids:
            self.events.emit(AnnotationEvent("lesions", ids=tuple(sorted(ids))))
