"""The synthesis panel: model selector, shape picker, size in mm, mode, preview controls."""

from __future__ import annotations

import numpy as np
import qtawesome as qta
from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.model_catalog import ModelInfo

MODES = (("inpaint", "Inpaint a new lesion"), ("remove", "Remove the selected lesion"), ("outpaint", "Outpaint around the selected lesion"))
SHAPE_SOURCES = (("generator", "Shape generator"), ("bank", "Mask bank"), ("real", "Real nodule shapes (LIDC)"),
                 ("builtin", "Built-in shapes"), ("drawn", "Selected drawn lesion"))
THUMB_PX = 56
GRID_GAP_PX = 8  # around each thumbnail in the shape and variant grids
_GRID_STYLE = ("QListWidget::item { padding: 1px; border: 2px solid transparent; }"
               " QListWidget::item:selected { background: transparent; border: 2px solid #3d7eff; }")


def mask_icon(mask: np.ndarray, pinned: bool = False) -> QIcon:
    """A square thumbnail of a binary shape (white on dark; gold frame when pinned)."""
    m = np.asarray(mask, bool)
    h, w = m.shape
    side = max(h, w, 1)
    canvas = np.zeros((side, side), np.uint8)
    r0, c0 = (side - h) // 2, (side - w) // 2
    canvas[r0 : r0 + h, c0 : c0 + w] = np.where(m, 235, 0)
    import cv2

    thumb = cv2.resize(canvas, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA)
    rgb = np.dstack([thumb, thumb, thumb]).copy()
    rgb[..., 2] = np.maximum(rgb[..., 2], 40)  # a hint of blue in the background
    if pinned:
        rgb[:3, :] = rgb[-3:, :] = rgb[:, :3] = rgb[:, -3:] = (255, 200, 0)
    image = QImage(rgb.data, THUMB_PX, THUMB_PX, 3 * THUMB_PX, QImage.Format.Format_RGB888).copy()
    return QIcon(QPixmap.fromImage(image))


class SynthesisPanel(QGroupBox):
    """Widgets only: it shows what the controller sets and emits what the user asks."""

    modelChosen = Signal(str)  # checkpoint stem as text ("" = none)
    addModelRequested = Signal()
    modeChosen = Signal(str)
    placeToggled = Signal(bool)  # the place tool on (True) or back to navigate
    shapeSourceChosen = Signal(str)
    rerollRequested = Signal()
    loadBankRequested = Signal()
    shapeChosen = Signal(int)
    pinToggled = Signal(int)
    sizeEdited = Signal(float, float, bool, bool)  # diameter, rotation, flip vertical, flip horizontal
    seedEdited = Signal(int)
    onlyInLocationToggled = Signal(bool)
    beforeAfterToggled = Signal(bool)
    splitViewToggled = Signal(bool)
    variantsRequested = Signal(int)
    variantChosen = Signal(int)
    acceptRequested = Signal()
    rejectRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Synthesize", parent)
        # --- model
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("modelCombo")
        self.model_combo.activated.connect(lambda i: self.modelChosen.emit(self.model_combo.itemData(i) or ""))
        self.add_model_button = QPushButton(qta.icon("fa5s.plus", color="#d7dde5"), "")
        self.add_model_button.setToolTip("Add a checkpoint (NAME.safetensors + NAME.json)…")
        self.add_model_button.clicked.connect(self.addModelRequested)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.add_model_button)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.model_info.setStyleSheet("color: #9aa4b2; font-size: 11px;")

        # --- mode
        self.mode_combo = QComboBox()
        for key, text in MODES:
            self.mode_combo.addItem(text, key)
        self.mode_combo.activated.connect(lambda i: self.modeChosen.emit(self.mode_combo.itemData(i)))
        self.place_button = QPushButton(qta.icon("fa5s.magic", color="#d7dde5"), "Place on the image (P)")
        self.place_button.setCheckable(True)
        self.place_button.setStyleSheet(  # the active tool must read as active in the dark theme
            "QPushButton:checked { background: #2f5fb8; border: 1px solid #3d7eff; border-radius: 3px;"
            " color: #ffffff; padding: 3px; }"
        )
        self.place_button.setToolTip("Click on the image to place (inpaint) or pick the lesion (remove, outpaint)")
        self.place_button.clicked.connect(self.placeToggled)
        # What to do next: derived from the mode and the tool by the controller, never left over
        # from the previous mode. Right under the mode, so it is on screen at 768 px height.
        self.status_label = QLabel("Pick a model, then click on the image to place a lesion.")
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("synthesisStatus")

        # --- shapes
        self.source_combo = QComboBox()
        for key, text in SHAPE_SOURCES:
            self.source_combo.addItem(text, key)
        self.source_combo.activated.connect(lambda i: self.shapeSourceChosen.emit(self.source_combo.itemData(i)))
        self.reroll_button = QPushButton(qta.icon("fa5s.dice", color="#d7dde5"), "Reroll")
        self.reroll_button.clicked.connect(self.rerollRequested)
        self.pin_button = QPushButton(qta.icon("fa5s.thumbtack", color="#d7dde5"), "Pin")
        self.pin_button.setToolTip("Keep this shape when rerolling")
        self.pin_button.clicked.connect(lambda: self.pinToggled.emit(self.shape_grid.currentRow()))
        self.bank_button = QPushButton(qta.icon("fa5s.folder-open", color="#d7dde5"), "Bank…")
        self.bank_button.setToolTip("Load a mask bank (.npz)")
        self.bank_button.clicked.connect(self.loadBankRequested)
        shape_buttons = QHBoxLayout()
        shape_buttons.addWidget(self.reroll_button)
        shape_buttons.addWidget(self.pin_button)
        shape_buttons.addWidget(self.bank_button)
        self.shape_grid = QListWidget()
        self.shape_grid.setObjectName("shapeGrid")
        self.shape_grid.setViewMode(QListWidget.ViewMode.IconMode)
        self.shape_grid.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.shape_grid.setMovement(QListWidget.Movement.Static)
        self.shape_grid.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.shape_grid.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # Cells as large as the thumbnail: no empty caption line (and its selection bar) under it.
        self.shape_grid.setGridSize(QSize(THUMB_PX + GRID_GAP_PX, THUMB_PX + GRID_GAP_PX))
        self.shape_grid.setFixedHeight(2 * (THUMB_PX + GRID_GAP_PX) + 2 * self.shape_grid.frameWidth() + 2)
        self.shape_grid.currentRowChanged.connect(lambda row: row >= 0 and self.shapeChosen.emit(row))
        # Shown instead of the shape picker when the method or mode places no picked shape.
        self.shapes_note = QLabel()
        self.shapes_note.setObjectName("shapesNote")
        self.shapes_note.setWordWrap(True)
        self.shapes_note.setStyleSheet("color: #9aa4b2; font-size: 11px;")

        # --- size and pose
        self.diameter_spin = QDoubleSpinBox()
        self.diameter_spin.setRange(0.5, 500.0)
        self.diameter_spin.setDecimals(1)
        self.diameter_spin.setKeyboardTracking(False)
        self.unit_label = QLabel("mm")
        diameter_row = QHBoxLayout()
        diameter_row.addWidget(self.diameter_spin, 1)
        diameter_row.addWidget(self.unit_label)
        self.unit_note = QLabel()
        self.unit_note.setWordWrap(True)
        self.unit_note.setStyleSheet("color: #e0b050; font-size: 11px;")
        self.rotation_spin = QDoubleSpinBox()
        self.rotation_spin.setRange(-180.0, 180.0)
        self.rotation_spin.setSuffix("°")
        self.rotation_spin.setKeyboardTracking(False)
        self.flip_v_check = QCheckBox("Flip ↕")
        self.flip_h_check = QCheckBox("Flip ↔")
        pose_row = QHBoxLayout()
        pose_row.addWidget(self.rotation_spin, 1)
        pose_row.addWidget(self.flip_v_check)
        pose_row.addWidget(self.flip_h_check)
        for widget in (self.diameter_spin, self.rotation_spin):
            widget.valueChanged.connect(self._emit_size)
        for widget in (self.flip_v_check, self.flip_h_check):
            widget.toggled.connect(self._emit_size)
        self.location_check = QCheckBox("Place only inside the location map")
        self.location_check.toggled.connect(self.onlyInLocationToggled)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.valueChanged.connect(self.seedEdited)

        # --- preview
        self.before_after_check = QCheckBox("Show original (Space)")
        self.before_after_check.toggled.connect(self.beforeAfterToggled)
        self.split_check = QCheckBox("Split view")
        self.split_check.toggled.connect(self.splitViewToggled)
        view_row = QHBoxLayout()
        view_row.addWidget(self.before_after_check)
        view_row.addWidget(self.split_check)
        self.variants_spin = QSpinBox()
        self.variants_spin.setRange(2, 12)
        self.variants_spin.setValue(4)
        self.variants_button = QPushButton(qta.icon("fa5s.th", color="#d7dde5"), "Variants")
        self.variants_button.setToolTip("Run several seeds and pick one")
        self.variants_button.clicked.connect(lambda: self.variantsRequested.emit(self.variants_spin.value()))
        variants_row = QHBoxLayout()
        variants_row.addWidget(self.variants_spin)
        variants_row.addWidget(self.variants_button, 1)
        self.variant_list = QListWidget()
        self.variant_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.variant_list.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.variant_list.setMovement(QListWidget.Movement.Static)
        self.variant_list.setGridSize(QSize(THUMB_PX + GRID_GAP_PX, THUMB_PX + GRID_GAP_PX))
        self.variant_list.setFixedHeight(THUMB_PX + GRID_GAP_PX + 2 * self.variant_list.frameWidth() + 2)
        for grid in (self.shape_grid, self.variant_list):  # the chosen thumbnail gets a frame
            grid.setStyleSheet(_GRID_STYLE)
        self.variant_list.setVisible(False)  # shown with variants only: the panel fits 768 px
        self.variant_list.currentRowChanged.connect(lambda row: row >= 0 and self.variantChosen.emit(row))
        self.accept_button = QPushButton(qta.icon("fa5s.check", color="#7fe0a0"), "Accept")
        self.reject_button = QPushButton(qta.icon("fa5s.times", color="#ff8080"), "Reject")
        self.accept_button.clicked.connect(self.acceptRequested)
        self.reject_button.clicked.connect(self.rejectRequested)
        decide_row = QHBoxLayout()
        decide_row.addWidget(self.accept_button)
        decide_row.addWidget(self.reject_button)

        # Long item texts must not widen the panel (it lives in a ~300 px side dock at 1366 px):
        # combos elide to the width they get, the full text is in the popup and the tooltip.
        for combo in (self.model_combo, self.mode_combo, self.source_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
            combo.currentTextChanged.connect(lambda text, c=combo: c.setToolTip(text))

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.addRow("Model", model_row)
        form.addRow(self.model_info)
        form.addRow("Mode", self.mode_combo)
        form.addRow(self.place_button)
        form.addRow(self.status_label)
        form.addRow("Shapes", self.source_combo)
        form.addRow(self.shape_grid)
        form.addRow(shape_buttons)
        form.addRow("Shapes", self.shapes_note)
        form.addRow("Diameter", diameter_row)
        form.addRow(self.unit_note)
        form.addRow("Rotation", pose_row)
        form.addRow("Seed", self.seed_spin)
        form.addRow(self.location_check)
        form.addRow(view_row)
        form.addRow(decide_row)
        form.addRow(variants_row)
        form.addRow(self.variant_list)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        self._form = form
        self._shape_rows = (self.source_combo, self.shape_grid, shape_buttons)
        self.show_shape_picker(True)
        self.set_preview_available(False)

    # ------------------------------------------------------------------ rendering

    def _emit_size(self) -> None:
        self.sizeEdited.emit(
            self.diameter_spin.value(), self.rotation_spin.value(),
            self.flip_v_check.isChecked(), self.flip_h_check.isChecked(),
        )

    def set_models(self, models: list[ModelInfo], current: str) -> None:
        with QSignalBlocker(self.model_combo):
            self.model_combo.clear()
            self.model_combo.addItem("— no model —", "")
            for info in models:
                self.model_combo.addItem(info.label(), str(info.stem))
                self.model_combo.setItemData(self.model_combo.count() - 1, info.summary(), Qt.ItemDataRole.ToolTipRole)
                if info.problem:  # listed greyed out with its reason, not selectable
                    self.model_combo.model().item(self.model_combo.count() - 1).setEnabled(False)
            index = self.model_combo.findData(current)
            self.model_combo.setCurrentIndex(max(index, 0))

    def show_model(self, stem: str) -> None:
        """Select `stem` in the model selector without emitting `modelChosen` (the controller
        chose it: from code, or after a mode switch). "" shows "— no model —"; a stem
        the selector does not list (a shape sampler) leaves it blank, not on the previous model."""
        index = self.model_combo.findData(stem)
        if index != self.model_combo.currentIndex():
            with QSignalBlocker(self.model_combo):
                self.model_combo.setCurrentIndex(index)

    def show_model_info(self, text: str) -> None:
        """The first line (family, modes, or why the model does not fit); all of it as a tooltip."""
        self.model_info.setText(text.split("\n", 1)[0])
        self.model_info.setToolTip(text)

    def show_placing(self, placing: bool) -> None:
        """Check the Place button while the place tool is active."""
        with QSignalBlocker(self.place_button):
            self.place_button.setChecked(placing)

    def show_mode(self, mode: str) -> None:
        with QSignalBlocker(self.mode_combo):
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))

    def show_shape_source(self, source: str, available: dict[str, bool]) -> None:
        with QSignalBlocker(self.source_combo):
            for i in range(self.source_combo.count()):
                item = self.source_combo.model().item(i)
                item.setEnabled(available.get(self.source_combo.itemData(i), True))
            self.source_combo.setCurrentIndex(self.source_combo.findData(source))

    def show_shape_picker(self, used: bool, note: str = "") -> None:
        """Show the shape source, gallery and its buttons only when a click places the picked
        shape; otherwise hide them and show `note` (why the picker does not apply) instead."""
        for row in self._shape_rows:
            self._form.setRowVisible(row, used)
        self.shapes_note.setText("" if used else note)
        self._form.setRowVisible(self.shapes_note, not used)

    def show_shapes(self, masks: list[np.ndarray], pinned: list[bool], current: int) -> None:
        with QSignalBlocker(self.shape_grid):
            self.shape_grid.clear()
            for i, (mask, pin) in enumerate(zip(masks, pinned)):
                item = QListWidgetItem(mask_icon(mask, pin), "")
                item.setToolTip(f"shape {i + 1}" + (" (pinned)" if pin else ""))
                self.shape_grid.addItem(item)
            self.shape_grid.setCurrentRow(current)

    def show_size(self, diameter: float, unit: str, note: str, rotation: float, flip_v: bool, flip_h: bool) -> None:
        widgets = (self.diameter_spin, self.rotation_spin, self.flip_v_check, self.flip_h_check)
        blockers = [QSignalBlocker(w) for w in widgets]
        self.diameter_spin.setValue(diameter)
        self.unit_label.setText(unit)
        self.unit_note.setText(note)
        self.unit_note.setVisible(bool(note))
        self.rotation_spin.setValue(rotation)
        self.flip_v_check.setChecked(flip_v)
        self.flip_h_check.setChecked(flip_h)
        del blockers

    def show_variants(self, thumbs: list[np.ndarray], current: int) -> None:
        with QSignalBlocker(self.variant_list):
            self.variant_list.clear()
            for i, thumb in enumerate(thumbs):
                item = QListWidgetItem(_gray_icon(thumb), "")
                item.setToolTip(f"variant {i + 1}")
                self.variant_list.addItem(item)
            if thumbs:
                self.variant_list.setCurrentRow(current)
        self.variant_list.setVisible(bool(thumbs))

    def show_before(self, before: bool) -> None:
        with QSignalBlocker(self.before_after_check):
            self.before_after_check.setChecked(before)

    def set_preview_available(self, available: bool) -> None:
        for widget in (self.accept_button, self.reject_button, self.before_after_check, self.split_check):
            widget.setEnabled(available)

    def show_status(self, text: str) -> None:
        self.status_label.setText(text)


def _gray_icon(patch: np.ndarray) -> QIcon:
    """An 8-bit thumbnail of a float patch, windowed to its own 1–99 % range."""
    import cv2

    p = np.asarray(patch, np.float32)
    lo, hi = np.percentile(p, [1, 99]) if p.size else (0.0, 1.0)
    scaled = np.clip((p - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    thumb = np.ascontiguousarray(cv2.resize(scaled, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA))
    image = QImage(thumb.data, THUMB_PX, THUMB_PX, THUMB_PX, QImage.Format.Format_Grayscale8).copy()
    return QIcon(QPixmap.fromImage(image))
