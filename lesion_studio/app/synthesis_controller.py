"""Synthesis preview: pick a shape and size, click to place, preview off the UI thread, accept.

Flow: the shape picker offers masks (shape generator, mask bank, built-in blobs or the selected
drawn lesion); with the "place" tool the modulated outline follows the cursor at true size; a
click builds a `SynthesisRequest` and the loaded synthesizer runs it on a worker thread (latest
request wins); the result is shown instead of the plane (before/after, split view, variants);
Accept writes pixels and mask into the annotation document as one undo step.

What the panel and canvas show follows the state, not the last event: the hint derives from the
mode, the tool, the model and the preview (`_hint`); a mode switch drops a preview of the other
mode; the preview's outlines are shown with the masks (H hides both).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem

from lesion_studio.app.preview_worker import LatestWinsWorker
from lesion_studio.app.torch_runtime import ensure_torch_imported
from lesion_studio.core.annotation import LesionMeta
from lesion_studio.core.builtin_shapes import builtin_shapes
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.geometry.crops import PixelBox
from lesion_studio.core.hashing import sha256_file
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.model_catalog import (
    OWN_SHAPE_FAMILIES,
    PAIR_FAMILIES,
    SHAPE_FAMILIES,
    ModelInfo,
    scan_models,
)
from lesion_studio.core.shape_choice import centred_origin, footprint
from lesion_studio.core.synthesis_plan import DEFAULT_FEATHER_PX, Blending, MaskSource, SynthesisRequest
from lesion_studio.core.tool_state import ToolState, synthesis_hint
from lesion_studio.core.view_state import ViewState
from lesion_studio.widgets.image_canvas import ImageCanvas
from lesion_studio.widgets.synthesis_panel import SynthesisPanel
from lesion_studio.lazy import lazy_import

measure = lazy_import("skimage.measure")

N_SHAPES = 8
DEFAULT_DIAMETER_MM = 10.0
DEFAULT_DIAMETER_PX = 24.0
HOLE_FEATHER_PX = DEFAULT_FEATHER_PX

#: Checkpoints that draw samples rather than fill a hole: never in the method list.
SAMPLER_FAMILIES = SHAPE_FAMILIES + PAIR_FAMILIES


def _disc(side: int) -> np.ndarray:
    """A filled circle of `side` px (bool): the cursor outline of a size-only placement."""
    r = np.arange(side) - (side - 1) / 2.0
    return r[:, None] ** 2 + r[None, :] ** 2 <= (side / 2.0) ** 2


#: The part of a crop box past the image edge (reflect-padded): the box's yellow, faded.
PADDING_COLOR = QColor(255, 213, 74, 140)
#: What the cursor outlines when the method brings its own lesion shape (only the size is known).
SIZE_ONLY_SHAPE = _disc(64)


class ModelCache:
    """Loaded synthesizers and shape samplers by checkpoint, shared with the worker thread."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], Any] = {}
        self._hashes: dict[str, str] = {}

    def synthesizer(self, stem: Path):
        return self._get("image", stem)

    def shape_sampler(self, stem: Path):
        return self._get("shape", stem)

    def _get(self, kind: str, stem: Path):
        key = (kind, str(stem))
        with self._lock:
            if key not in self._models:
                from lesion_studio.models.inference import load_shape_sampler, load_synthesizer  # torch: worker only

                if self.device == "cpu":
                    import torch

                    # Leave one core to the UI thread so the event loop never stalls on a preview.
                    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))

                if kind == "shape":
                    self._models[key] = load_shape_sampler(stem, self.device)
                else:  # bf16 where native: ~2x faster previews; the precision is in each result's provenance
                    self._models[key] = load_synthesizer(stem, self.device, precision="auto")
            return self._models[key]

    def weights_hash(self, stem: Path) -> str:
        key = str(stem)
        with self._lock:
            if key not in self._hashes:
                weights = stem.with_name(stem.name + ".safetensors")
                # a classical method has no weights: its identity (library hash) is in provenance
                self._hashes[key] = sha256_file(weights) if weights.is_file() else f"classical:{stem.name}"
            return self._hashes[key]


@dataclass
class Preview:
    """What a finished preview shows and what Accept would apply."""

    request_ids: tuple[int, ...]
    results: list[Any]  # SynthesisResult per variant
    slice_index: int
    original: np.ndarray  # the plane before
    lesion_mask_before: np.ndarray
    model: ModelInfo
    model_hash: str
    chosen: int = 0


@dataclass
class ShapeState:
    source: str = "builtin"
    masks: list[np.ndarray] = field(default_factory=list)
    pinned: list[bool] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # bank index / generator or builtin seed
    current: int = 0
    seed: int = 0


class SynthesisController(QObject):
    """Wires the synthesis panel, the canvas and the annotation document to the synthesizer."""

    message = Signal(str)
    previewShown = Signal()
    previewAccepted = Signal(int)  # new lesion id (0 when none was added)

    def __init__(
        self,
        view_state: ViewState,
        tools: ToolState,
        canvas: ImageCanvas,
        panel: SynthesisPanel,
        document_provider,
        device: str = "cpu",
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.view_state = view_state
        self.tools = tools
        self.canvas = canvas
        self.panel = panel
        self.document_provider = document_provider  # () -> AnnotationDocument | None
        self.models = ModelCache(device)
        self.catalog: list[ModelInfo] = []
        self.model: ModelInfo | None = None
        self._automatic_model = True  # the model is the app's pick (default_model), not the user's
        self.mode = "inpaint"
        self.shapes = ShapeState()
        self.bank: MaskBank | None = None
        self.real_bank: MaskBank | None = None  # real LIDC nodule outlines (bundled library)
        self.diameter = DEFAULT_DIAMETER_MM
        self.rotation_deg = 0.0
        self.flip_vertical = False
        self.flip_horizontal = False
        self.seed = 0
        self.only_in_location = False
        self.preview: Preview | None = None
        self.showing_before = False
        self.split_view = False
        self._footprint_cache: tuple[tuple, np.ndarray, QPainterPath] | None = None
        self.worker = LatestWinsWorker(self)
        self.worker.finished.connect(self._on_preview_done)
        self.worker.failed.connect(self._on_preview_failed)
        self.worker.busyChanged.connect(self._on_busy)
        self.shape_worker = LatestWinsWorker(self)
        self.shape_worker.finished.connect(self._on_shapes_sampled)
        self.shape_worker.failed.connect(lambda _id, exc: self.message.emit(f"Shape sampling failed: {exc}"))

        # Canvas feedback: the placed outline and the context crop of the preview.
        self.outline = canvas.feedback_item(QGraphicsPathItem, "#5ee0ff", z=30)
        # The crop box: its part inside the image (dashed), and apart from it the part past the
        # image edge, which the method sees as reflect-padded (mirrored) pixels (hatched, dotted).
        self.crop_rect = canvas.feedback_item(QGraphicsRectItem, "#ffd54a", z=30, width=1, dashed=True)
        self.crop_rect.setToolTip("The crop the synthesis method sees around the lesion")
        self.crop_padding = canvas.feedback_item(QGraphicsPathItem, PADDING_COLOR.name(), z=29, width=1)
        pen = self.crop_padding.pen()
        pen.setStyle(Qt.PenStyle.DotLine)
        pen.setColor(PADDING_COLOR)
        self.crop_padding.setPen(pen)
        self.crop_padding.setBrush(QBrush(PADDING_COLOR, Qt.BrushStyle.BDiagPattern))
        self.crop_padding.setToolTip("Past the image edge: the method sees mirrored (reflect-padded) pixels here")
        self.split_line = canvas.feedback_item(QGraphicsPathItem, "#ffffff", z=31, width=1)

        panel.modelChosen.connect(self.choose_model)
        panel.modeChosen.connect(self.set_mode)
        panel.placeToggled.connect(lambda on: self.tools.update(tool="place" if on else "navigate"))
        panel.shapeSourceChosen.connect(self.set_shape_source)
        panel.rerollRequested.connect(self.reroll)
        panel.shapeChosen.connect(self.choose_shape)
        panel.pinToggled.connect(self.toggle_pin)
        panel.sizeEdited.connect(self._on_size_edited)
        panel.seedEdited.connect(lambda s: setattr(self, "seed", int(s)))
        panel.onlyInLocationToggled.connect(lambda v: setattr(self, "only_in_location", bool(v)))
        panel.beforeAfterToggled.connect(self.set_showing_before)
        panel.splitViewToggled.connect(self.set_split_view)
        panel.variantsRequested.connect(self.run_variants)
        panel.variantChosen.connect(self.choose_variant)
        panel.acceptRequested.connect(self.accept)
        panel.rejectRequested.connect(self.reject)
        canvas.toolClicked.connect(self._on_click)
        canvas.cursorMoved.connect(self._on_cursor)
        canvas.cursorLeft.connect(self._show_preview_feedback)
        view_state.changed.connect(self._on_view_changed)
        tools.changed.connect(self._on_tools_changed)

        self.refresh_models()
        self.set_shape_source("builtin")
        self.panel.show_placing(self._placing())
        self.refresh_hint()

    # ------------------------------------------------------------------ models

    def refresh_models(self, extra_folders: list[Path] | None = None) -> None:
        self.catalog = scan_models(extra_folders)
        current = str(self.model.stem) if self.model else ""
        automatic = not current or self._automatic_model
        if not current:
            first = self.default_model(self.mode)
            current = str(first.stem) if first else ""
        self.panel.set_models([m for m in self.catalog if m.family not in SAMPLER_FAMILIES], current)
        self.choose_model(current)
        self._automatic_model = automatic

    def default_model(self, mode: str) -> ModelInfo | None:
        """The method the app picks for `mode`: a bundled model whose card makes it the default
        for the shown image's kind, else the first catalog entry serving the mode that runs on
        this image (classical methods are listed first)."""
        kind = self._image_kind() if self.view_state.image is not None else None
        usable = [m for m in self.catalog if m.serves(mode) and m.runs_on(kind) and not m.problem]
        preferred = [m for m in usable if m.is_default and kind is not None and kind in m.image_kinds]
        return (preferred or usable or [None])[0]

    def add_checkpoint(self, path: str | Path) -> bool:
        """Register a checkpoint from anywhere (its JSON sidecar is read, weights are not)."""
        from lesion_studio.core.model_catalog import read_model_info

        stem = Path(path)
        stem = stem.with_name(stem.name.split(".")[0]) if stem.suffix else stem
        info = read_model_info(stem.with_name(stem.name + ".json"))
        if info is None:
            self.message.emit(f"{path}: not a lesion-studio checkpoint (NAME.safetensors + NAME.json)")
            return False
        if info.problem:
            self.message.emit(f"{info.stem}.json: cannot be used: {info.problem}")
            return False
        if all(m.stem != info.stem for m in self.catalog):
            self.catalog.append(info)
        self.panel.set_models([m for m in self.catalog if m.family not in SAMPLER_FAMILIES], str(info.stem))
        self.choose_model(str(info.stem))
        return True

    def choose_model(self, stem: str) -> None:
        """Use the catalog entry `stem` (none when absent or unusable); the selector follows.
        A model chosen here stays when the mode or the image changes (while it serves them);
        the app's own pick (`default_model`) follows them."""
        self._automatic_model = False
        self.model = next((m for m in self.catalog if str(m.stem) == stem and not m.problem), None)
        self.panel.show_model(str(self.model.stem) if self.model else "")
        if self.model is None:
            self.panel.show_model_info("No model loaded: add a checkpoint to preview synthetic lesions.")
        elif not self.model.serves(self.mode):
            self.panel.show_model_info(
                f"{self.model.name} is a {self.model.family} model: it serves "
                f"{', '.join(self.model.modes) or 'no preview mode'}, not {self.mode}.\n" + self.model.summary()
            )
        else:
            self.panel.show_model_info(self.model.summary())
        self.panel.show_shape_picker(self.shapes_used(), self._shape_note())
        self._footprint_cache = None  # the cursor outline follows (picked shape or size-only disc)
        self.refresh_hint()

    def shapes_used(self) -> bool:
        """Whether a click places the picked shape: inpaint with a method that takes it, not a
        real-nodule insertion (its library nodule brings its own outline) nor remove/outpaint
        (they work on the clicked lesion)."""
        return self.mode == "inpaint" and (self.model is None or self.model.family not in OWN_SHAPE_FAMILIES)

    def _shape_note(self) -> str:
        """Why the shape picker is hidden ("" while it is used)."""
        if self.shapes_used():
            return ""
        if self.mode != "inpaint":
            return f"{self.mode.capitalize()} works on the lesion you click; shapes are not used."
        return f"{self.model.name} inserts a real library nodule of the chosen diameter; shapes are not used."

    def shape_model(self) -> ModelInfo | None:
        return next((m for m in self.catalog if m.family in SHAPE_FAMILIES and not m.problem), None)

    def set_mode(self, mode: str) -> None:
        """Switch inpaint / remove / outpaint; the model, preview, outline and hint follow."""
        self.mode = mode
        self.panel.show_mode(mode)
        if self.preview is not None and self.preview.results[0].plan.request.mode != mode:
            self._drop_preview()  # Accept would apply the other mode
        self._show_preview_feedback()  # the inpaint cursor outline is not the other modes'
        automatic = self._automatic_model
        if self.model is None or not self.model.serves(mode) or automatic:
            match = self.default_model(mode)
            if match is not None:
                self.panel.set_models([m for m in self.catalog if m.family not in SAMPLER_FAMILIES], str(match.stem))
                self.choose_model(str(match.stem))
                self._automatic_model = True
                return
        self.choose_model(str(self.model.stem) if self.model else "")
        self._automatic_model = automatic

    def _hint(self) -> str:
        """What to do next, from the current model, mode, tool and preview."""
        if self.model is None:
            return "No model loaded: add a checkpoint (+) to preview synthetic lesions."
        if not self.model.serves(self.mode):
            return f"{self.model.name} cannot {self.mode}: choose a {self.mode} model."
        if self.preview is not None:
            n = len(self.preview.results)
            return f"Preview ready ({n} variant{'s' if n > 1 else ''}): Accept or Reject."
        return synthesis_hint(self.mode, self.tools.settings.tool)

    def refresh_hint(self) -> None:
        """Show the hint for the current state (after any change of mode, tool, model, preview)."""
        self.panel.show_status(self._hint())

    # ------------------------------------------------------------------ shapes

    def set_shape_source(self, source: str) -> None:
        available = {"generator": self.shape_model() is not None, "bank": self.bank is not None, "real": True,
                     "builtin": True, "drawn": True}
        if not available.get(source, False):
            self.message.emit(
                {"generator": "No shape generator checkpoint found; using built-in shapes.",
                 "bank": "Load a mask bank first (Bank…)."}.get(source, "")
            )
            source = "builtin"
        self.shapes.source = source
        self.panel.show_shape_source(source, available)
        kept = [(m, i) for m, i, p in zip(self.shapes.masks, self.shapes.indices, self.shapes.pinned) if p]
        self.shapes.masks = [m for m, _ in kept]
        self.shapes.indices = [i for _, i in kept]
        self.shapes.pinned = [True] * len(kept)
        self.reroll()

    def load_bank(self, path: str | Path) -> bool:
        try:
            self.bank = MaskBank.load(path)
        except (LesionStudioError, OSError, ValueError, KeyError) as exc:
            self.message.emit(f"Cannot load mask bank {path}: {exc}")
            return False
        self.set_shape_source("bank")
        return True

    def reroll(self) -> None:
        """Replace the unpinned shapes with new samples (pinned favourites stay)."""
        source = self.shapes.source
        keep = [(m, i) for m, i, p in zip(self.shapes.masks, self.shapes.indices, self.shapes.pinned) if p]
        needed = N_SHAPES - len(keep)
        self.shapes.seed += N_SHAPES
        seed = self.shapes.seed
        if source == "drawn":
            mask = self._selected_lesion_mask()
            new = [(mask, -1)] if mask is not None else []
            if mask is None:
                self.message.emit("Select a drawn lesion (select tool) to use its shape.")
        elif source == "bank" and self.bank is not None:
            rng = np.random.default_rng(seed)
            picks = rng.choice(len(self.bank), size=min(needed, len(self.bank)), replace=len(self.bank) < needed)
            new = [(self.bank.get(int(i)).mask, int(i)) for i in picks]
        elif source == "real":
            kind = self._image_kind()
            self.shape_worker.submit(lambda: (keep, seed, *_real_shapes(kind, needed, seed)))
            return
        elif source == "generator" and self.shape_model() is not None:
            stem = self.shape_model().stem
            self._ensure_runtime()
            self.shape_worker.submit(lambda: (keep, seed, self.models.shape_sampler(stem).sample(needed, seed)))
            return
        else:
            new = [(m, seed + k) for k, m in enumerate(builtin_shapes(needed, seed))]
        self._set_shapes(keep, new)

    def _on_shapes_sampled(self, _request_id: int, payload) -> None:
        if len(payload) == 5:  # real nodule shapes: (keep, seed, masks, bank indices, bank)
            keep, _seed, masks, indices, self.real_bank = payload
            self._set_shapes(keep, [(np.asarray(m, bool), int(i)) for m, i in zip(masks, indices)])
            return
        keep, seed, masks = payload
        self._set_shapes(keep, [(np.asarray(m, bool), seed + k) for k, m in enumerate(masks)])

    def _image_kind(self) -> str:
        """"ct" or "radiograph" for the shown image (which real-nodule view its shapes come from)."""
        from lesion_studio.core.intensity import image_kind

        image = self.view_state.image
        if image is None:
            return "radiograph"
        return image_kind(image.plane(self.view_state.slice_index), image.modality)

    def _set_shapes(self, keep, new) -> None:
        self.shapes.masks = [m for m, _ in keep] + [m for m, _ in new]
        self.shapes.indices = [i for _, i in keep] + [i for _, i in new]
        self.shapes.pinned = [True] * len(keep) + [False] * len(new)
        self.shapes.current = min(self.shapes.current, max(0, len(self.shapes.masks) - 1))
        self.panel.show_shapes(self.shapes.masks, self.shapes.pinned, self.shapes.current)
        self._footprint_cache = None

    def choose_shape(self, index: int) -> None:
        if 0 <= index < len(self.shapes.masks):
            self.shapes.current = index
            self._footprint_cache = None

    def toggle_pin(self, index: int) -> None:
        if 0 <= index < len(self.shapes.pinned):
            self.shapes.pinned[index] = not self.shapes.pinned[index]
            self.panel.show_shapes(self.shapes.masks, self.shapes.pinned, index)

    def _selected_lesion_mask(self) -> np.ndarray | None:
        doc = self.document_provider()
        if doc is None or not doc.selected_id:
            return None
        plane = doc.plane(self.view_state.slice_index)
        mask = plane == doc.selected_id
        return mask if mask.any() else None

    # ------------------------------------------------------------------ size

    def size_unit(self) -> tuple[str, str]:
        """("mm", "") with a valid spacing, else ("px", a note saying why)."""
        image = self.view_state.image
        if image is not None and image.plane_spacing_mm is not None:
            return "mm", ""
        return "px", "This image has no pixel spacing: sizes in px."

    def set_size(self, diameter: float, rotation_deg: float = 0.0, flip_vertical: bool = False, flip_horizontal: bool = False) -> None:
        self.diameter = float(diameter)
        self.rotation_deg = float(rotation_deg)
        self.flip_vertical = bool(flip_vertical)
        self.flip_horizontal = bool(flip_horizontal)
        self._footprint_cache = None
        self._show_size()

    def _on_size_edited(self, diameter: float, rotation: float, flip_v: bool, flip_h: bool) -> None:
        self.set_size(diameter, rotation, flip_v, flip_h)

    def _show_size(self) -> None:
        unit, note = self.size_unit()
        self.panel.show_size(self.diameter, unit, note, self.rotation_deg, self.flip_vertical, self.flip_horizontal)

    def current_footprint(self) -> np.ndarray | None:
        """The mask a click would place (bool), at true size for this image."""
        return self._footprint()[0] if self._footprint() else None

    def _placed_shape(self) -> np.ndarray | None:
        """The shape a click places: the picked one, or a disc (the size only) when the
        method brings its own lesion outline."""
        if not self.shapes_used():
            return SIZE_ONLY_SHAPE
        return self.shapes.masks[self.shapes.current] if self.shapes.masks else None

    def _footprint(self) -> tuple[np.ndarray, QPainterPath] | None:
        shape = self._placed_shape()
        if shape is None or self.view_state.image is None:
            return None
        unit, _ = self.size_unit()
        key = (id(shape), self.diameter, unit, self.rotation_deg,
               self.flip_vertical, self.flip_horizontal, self.view_state.image.plane_spacing_mm)
        if self._footprint_cache is None or self._footprint_cache[0] != key:
            try:
                fp = footprint(
                    shape, diameter=self.diameter, unit=unit,
                    spacing_mm=self.view_state.image.plane_spacing_mm, rotation_deg=self.rotation_deg,
                    flip_vertical=self.flip_vertical, flip_horizontal=self.flip_horizontal,
                )
            except LesionStudioError as exc:
                self.message.emit(str(exc))
                return None
            self._footprint_cache = (key, fp, _contour_path(fp))
        return self._footprint_cache[1], self._footprint_cache[2]

    # ------------------------------------------------------------------ canvas

    def _placing(self) -> bool:
        return self.tools.settings.tool == "place"

    def _on_tools_changed(self, names: set[str]) -> None:
        if "tool" in names:
            self.panel.show_placing(self._placing())
            self.refresh_hint()
        if names & {"tool", "show_labels"}:
            self._show_preview_feedback()

    def _show_preview_feedback(self) -> None:
        """The preview's outline, crop box and split line are shown with the lesion masks (H
        hides them together); without a preview the cursor outline waits for the next move."""
        shown = self.preview is not None and self.tools.settings.show_labels
        self.crop_rect.setVisible(shown)
        self.crop_padding.setVisible(shown and not self.crop_padding.path().isEmpty())
        self.outline.setVisible(shown and not self.showing_before)
        self.split_line.setVisible(shown and self.split_view and not self.showing_before)

    def _on_cursor(self, row: float, col: float) -> None:
        if not self._placing() or self.preview is not None or self.mode != "inpaint":
            return
        found = self._footprint()
        if found is None:
            return
        fp, path = found
        r0, c0 = centred_origin(fp.shape, (row - 0.5, col - 0.5))
        self.outline.setPath(path)
        self.outline.setPos(c0, r0)
        self.outline.setVisible(True)

    def _on_click(self, row: float, col: float, mods: int) -> None:
        if not self._placing():
            return
        self.request_preview((row - 0.5, col - 0.5))

    def _on_view_changed(self, kind: str) -> None:
        if kind in ("image", "slice"):
            self._drop_preview()
            self._show_size()
            self.refresh_hint()  # no "Preview ready" left from the previous image or slice
            if kind == "image":
                self._footprint_cache = None
                if self._automatic_model or (self.model is not None and not self.model.runs_on(self._image_kind())):
                    # the app's pick follows the image (a CT default on CT); a CT-only model leaves a radiograph
                    pick = self.default_model(self.mode)
                    self.choose_model(str(pick.stem) if pick else "")
                    self._automatic_model = True

    # ------------------------------------------------------------------ preview

    def build_requests(self, centre_rc: tuple[float, float], seeds: list[int],
                       vary_shape: bool = False) -> tuple[list[SynthesisRequest], dict]:
        """Requests for a click (one per seed) and the keyword arguments of the synthesizer call.

        With `vary_shape` (variants) request k also takes another shape sample: the gallery's
        shape k places after the chosen one (bank, real, generator, built-in), and past the
        gallery a bank index left open so the engine draws the entry from the request's seed
        (the real-nodule method's own library always does). Request 0 is the chosen shape. The
        per-request masks are then in `kwargs["source_masks"]` (one synthesizer call each).
        """
        doc = self.document_provider()
        unit, _ = self.size_unit()
        kwargs: dict[str, Any] = {}
        mask_sources: list[MaskSource] = []
        source_masks: list[np.ndarray | None] = []
        if self.mode == "inpaint":
            source = self.shapes.source
            n_gallery = len(self.shapes.masks)
            for k in range(len(seeds)):
                step = k if (vary_shape and source != "drawn") else 0
                pick = (self.shapes.current + step) % n_gallery if n_gallery else -1
                in_gallery = n_gallery > 0 and step < n_gallery
                index = self.shapes.indices[pick] if in_gallery else -1
                mask = self.shapes.masks[pick] if n_gallery else None
                if source == "bank":
                    mask_sources.append(MaskSource(kind="bank", bank_index=index if in_gallery else None))
                    kwargs["bank"] = self.bank
                elif source == "real" and self.real_bank is not None:
                    mask_sources.append(MaskSource(kind="bank", bank_index=index if in_gallery else None,
                                                   label="real LIDC nodule shape"))
                    kwargs["bank"] = self.real_bank
                elif source == "generator":
                    mask_sources.append(MaskSource(kind="generator", label=f"shape seed {index}"))
                    source_masks.append(mask)
                else:
                    label = "built-in lobulated shape" if source == "builtin" else "drawn lesion"
                    mask_sources.append(MaskSource(kind="drawn", label=f"{label} {index}"))
                    source_masks.append(mask)
            size = {"diameter_mm": self.diameter} if unit == "mm" else {"diameter_px": self.diameter}
            pose = {"rotation_deg": self.rotation_deg, "flip_vertical": self.flip_vertical, "flip_horizontal": self.flip_horizontal}
        else:
            mask_sources = [MaskSource(kind="existing")] * len(seeds)
            size, pose = {}, {}
        if source_masks:
            kwargs["source_mask"] = source_masks[0]
            if vary_shape and len(seeds) > 1:
                kwargs["source_masks"] = source_masks
        model_id = self.model.name if self.model else ""
        # The engine writes only the hole (inpaint/remove) or the regenerated surroundings
        # (outpaint) plus this seam; batch export uses the same default.
        blending = Blending(feather_px=HOLE_FEATHER_PX)
        requests = [
            SynthesisRequest(mode=self.mode, centre_rc=centre_rc, mask_source=ms, seed=int(s),
                             model_id=model_id, blending=blending, **size, **pose)
            for s, ms in zip(seeds, mask_sources)
        ]
        if doc is not None:
            kwargs["lesion_mask"] = doc.plane(self.view_state.slice_index) > 0
        return requests, kwargs

    def request_preview(self, centre_rc: tuple[float, float], n_variants: int = 1) -> int | None:
        """Start a preview at `centre_rc` (document pixel coordinates); returns its id."""
        image = self.view_state.image
        doc = self.document_provider()
        if image is None or doc is None:
            return None
        if self.model is None:
            self.panel.show_status("No model loaded: add a checkpoint first.")
            self.message.emit("No synthesis model is loaded.")
            return None
        if not self.model.serves(self.mode):
            self.panel.show_status(f"{self.model.name} cannot {self.mode}: choose a {self.mode} model.")
            return None
        slice_index = self.view_state.slice_index
        r, c = int(round(centre_rc[0])), int(round(centre_rc[1]))
        h, w = image.plane_shape
        if not (0 <= r < h and 0 <= c < w):
            return None
        if self.mode in ("remove", "outpaint") and doc.lesion_at(slice_index, r, c) == 0:
            self.panel.show_status(f"No lesion here: {synthesis_hint(self.mode, 'place').lower()}")
            return None
        if self.mode == "inpaint" and self.only_in_location and not doc.plane(slice_index, "location")[r, c]:
            self.panel.show_status("Outside the location map: placing is limited to it.")
            return None
        self._ensure_runtime()
        try:
            requests, kwargs = self.build_requests(centre_rc, [self.seed + k for k in range(n_variants)],
                                                   vary_shape=n_variants > 1)
        except LesionStudioError as exc:
            self.panel.show_status(str(exc))
            return None
        plane = image.plane(slice_index).copy()
        spacing = image.plane_spacing_mm
        modality = image.modality
        model = self.model
        models = self.models

        def run():
            synthesizer = models.synthesizer(model.stem)
            per_request = kwargs.pop("source_masks", None)
            if per_request is None:
                results = synthesizer(plane, requests, spacing_mm=spacing, modality=modality, **kwargs)
            else:  # variants with their own shapes: one call per shape
                results = [synthesizer(plane, [req], spacing_mm=spacing, modality=modality,
                                       **{**kwargs, "source_mask": m})[0] for req, m in zip(requests, per_request)]
            return results, models.weights_hash(model.stem)

        self._pending = (slice_index, plane, kwargs.get("lesion_mask"), model)
        self.panel.show_status("Synthesizing…")
        return self.worker.submit(run)

    def _ensure_runtime(self) -> None:
        if "torch" not in sys.modules:
            self.message.emit("Loading the model runtime (torch)…")
            self.panel.show_status("Loading the model runtime (torch)…")
            QCoreApplication.processEvents()
            ensure_torch_imported()

    def run_variants(self, n: int) -> None:
        if self.preview is None:
            self.panel.show_status("Place a lesion first; variants re-run it with other seeds.")
            return
        centre = self.preview.results[0].plan.request.centre_rc
        self.request_preview(centre, n_variants=int(n))

    def _on_preview_done(self, request_id: int, payload) -> None:
        results, model_hash = payload
        slice_index, plane, lesion_mask, model = self._pending
        if slice_index != self.view_state.slice_index or results[0].plan.request.mode != self.mode:
            self.refresh_hint()
            return  # the user moved on (another slice or mode); a stale preview is never shown
        self.preview = Preview(
            request_ids=(request_id,), results=list(results), slice_index=slice_index, original=plane,
            lesion_mask_before=np.zeros(plane.shape, bool) if lesion_mask is None else lesion_mask,
            model=model, model_hash=model_hash,
        )
        self.showing_before = False
        self.panel.show_before(False)
        thumbs = []
        for result in results:
            ctx = result.box
            r0, c0 = max(0, ctx.row0), max(0, ctx.col0)
            thumbs.append(result.image[r0 : r0 + ctx.height, c0 : c0 + ctx.width])
        self.panel.show_variants(thumbs if len(results) > 1 else [], 0)
        self.panel.set_preview_available(True)
        self.refresh_hint()
        self._render_preview()
        self.previewShown.emit()

    def _on_preview_failed(self, _request_id: int, error: Exception) -> None:
        text = str(error)
        self.panel.show_status(f"Synthesis failed: {text}")
        self.message.emit(f"Synthesis failed: {text}")

    def _on_busy(self, busy: bool) -> None:
        if busy:
            self.panel.show_status("Synthesizing…")

    def choose_variant(self, index: int) -> None:
        if self.preview is not None and 0 <= index < len(self.preview.results):
            self.preview.chosen = index
            self._render_preview()

    def set_showing_before(self, before: bool) -> None:
        self.showing_before = bool(before)
        self.panel.show_before(self.showing_before)
        self._render_preview()

    def toggle_before_after(self) -> None:
        if self.preview is not None:
            self.set_showing_before(not self.showing_before)

    def set_split_view(self, split: bool) -> None:
        self.split_view = bool(split)
        self._render_preview()

    def displayed_plane(self) -> np.ndarray | None:
        """What the canvas shows for the preview (after, before, or split at the crop centre)."""
        if self.preview is None:
            return None
        result = self.preview.results[self.preview.chosen]
        if self.showing_before:
            return self.preview.original
        if self.split_view:
            ctx = result.box
            split_col = ctx.col0 + ctx.width // 2
            shown = self.preview.original.copy()
            shown[:, :split_col] = result.image[:, :split_col]
            return shown
        return result.image

    def _render_preview(self) -> None:
        image = self.view_state.image
        if image is None:
            return
        window = self.view_state.window
        levels = (window.low, window.high)
        if self.preview is None:
            self.canvas.show_plane(image.plane(self.view_state.slice_index), levels, image.plane_spacing_mm)
            for item in (self.crop_rect, self.crop_padding, self.split_line):
                item.setVisible(False)
            return
        result = self.preview.results[self.preview.chosen]
        self.canvas.show_plane(self.displayed_plane(), levels, image.plane_spacing_mm)
        ctx = result.box
        inside, padding = crop_box_parts(ctx, image.plane_shape)
        self.crop_rect.setRect(inside)
        self.crop_padding.setPath(padding)
        new_mask = result.plan.footprint
        self.outline.setPath(_contour_path(new_mask))
        self.outline.setPos(result.plan.footprint_origin[1], result.plan.footprint_origin[0])
        if self.split_view and not self.showing_before:
            x = ctx.col0 + ctx.width // 2
            path = QPainterPath()
            path.moveTo(x, 0)
            path.lineTo(x, image.plane_shape[0])
            self.split_line.setPath(path)
        self._show_preview_feedback()

    def _drop_preview(self) -> None:
        self.worker.cancel_pending()
        had = self.preview is not None
        self.preview = None
        self.panel.set_preview_available(False)
        self.panel.show_variants([], 0)
        self.outline.setVisible(False)
        self.crop_rect.setVisible(False)
        self.crop_padding.setVisible(False)
        self.split_line.setVisible(False)
        if had:
            self._render_preview()

    def reject(self) -> None:
        self._drop_preview()
        self.panel.show_status("Preview discarded. " + self._hint())

    def accept(self) -> int:
        """Apply the preview to the working copy and the masks as one undo step."""
        preview, doc, image = self.preview, self.document_provider(), self.view_state.image
        if preview is None or doc is None or image is None:
            return 0
        result = preview.results[preview.chosen]
        slice_index = preview.slice_index
        mode = result.plan.request.mode
        provenance = dict(result.provenance)
        provenance["model_sha256"] = preview.model_hash
        changed = result.image != preview.original
        new_pixels = result.mask & ~preview.lesion_mask_before
        removed = preview.lesion_mask_before & ~result.mask
        doc.attach_image(image.pixels)
        label = 0
        with doc.transaction(f"synthesize ({mode})"):
            if changed.any():
                rows = np.flatnonzero(changed.any(axis=1))
                cols = np.flatnonzero(changed.any(axis=0))
                bbox = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
                doc.write_image(slice_index, bbox, result.image[bbox[0] : bbox[1], bbox[2] : bbox[3]])
            if mode == "inpaint" and new_pixels.any():
                label = doc.next_lesion_id()
                doc.paint_mask(new_pixels, label, slice=slice_index)
                doc.set_lesion_meta(label, LesionMeta(doc.current_class, "synthetic", provenance=provenance))
            elif mode == "remove" and removed.any():
                doc.paint_mask(removed, 0, slice=slice_index)
            elif mode == "outpaint":
                under = doc.lesion_at(slice_index, *map(int, map(round, result.plan.request.centre_rc)))
                meta = doc.lesion_meta(under)
                if meta is not None:
                    doc.set_lesion_meta(under, LesionMeta(meta.class_name, meta.origin, provenance=provenance))
        self.preview = None
        self._drop_preview()
        self.view_state.notify_pixels_changed()
        if label:
            doc.selected_id = label
        self.panel.show_status(f"Accepted: {mode}" + (f", lesion {label} added as synthetic." if label else "."))
        self.previewAccepted.emit(label)
        return label

    def shutdown(self) -> None:
        self.worker.stop()
        self.shape_worker.stop()


def _real_shapes(kind: str, n: int, seed: int) -> tuple[list[np.ndarray], list[int], MaskBank]:
    """`n` real LIDC nodule outlines for an image of this kind (worker thread: the library's
    bank takes about a second to build the first time)."""
    from lesion_studio.core.classical.nodule_library import bundled_library

    bank = bundled_library().shape_bank("axial" if kind == "ct" else "projected")
    picks = np.random.default_rng(seed).choice(len(bank), size=min(n, len(bank)), replace=False)
    return [bank.get(int(i)).mask for i in picks], [int(i) for i in picks], bank


def crop_box_parts(box: PixelBox, image_shape: tuple[int, int]) -> tuple[QRectF, QPainterPath]:
    """The crop `box` in image pixel coordinates (x = column, y = row), split at the image edge:
    the rectangle inside the image (the real pixels the method sees) and the path of the part
    outside it (empty when there is none), which `extract_crop` fills by reflection."""
    h, w = int(image_shape[0]), int(image_shape[1])
    full = QRectF(box.col0, box.row0, box.width, box.height)
    image_rect = QRectF(0.0, 0.0, float(w), float(h))
    outside = QPainterPath()
    if not image_rect.contains(full):
        whole, inner = QPainterPath(), QPainterPath()
        whole.addRect(full)
        inner.addRect(image_rect)
        outside = whole.subtracted(inner)
    return full.intersected(image_rect), outside


def _contour_path(mask: np.ndarray) -> QPainterPath:
    """Outline of a bool mask in its own pixel coordinates (pixel i spans [i, i+1))."""
    path = QPainterPath()
    padded = np.pad(np.asarray(mask, np.float32), 1)
    for contour in measure.find_contours(padded, 0.5):
        pts = contour - 1 + 0.5  # back to mask coordinates, pixel centres at i + 0.5
        path.moveTo(QPointF(pts[0, 1], pts[0, 0]))
        for r, c in pts[1:]:
            path.lineTo(QPointF(c, r))
        path.closeSubpath()
    return path
