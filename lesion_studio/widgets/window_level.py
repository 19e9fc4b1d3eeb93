"""Window/level panel: numeric centre and width, presets and reset."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QWidget,
)

_SPIN_LIMIT = 1e7


class WindowLevelPanel(QGroupBox):
    """Edits a window; emits the user's intent, shows whatever the controller sets."""

    windowEdited = Signal(float, float)  # center, width
    presetChosen = Signal(str)
    resetRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Window / level", parent)
        self.center_spin = QDoubleSpinBox()
        self.width_spin = QDoubleSpinBox()
        for spin in (self.center_spin, self.width_spin):
            spin.setDecimals(1)
            spin.setKeyboardTracking(False)
            spin.setRange(-_SPIN_LIMIT, _SPIN_LIMIT)
        self.width_spin.setMinimum(1.0)
        self.preset_combo = QComboBox()
        self.preset_combo.setPlaceholderText("Presets…")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the image's own window")
        self.unit_suffix = ""

        form = QFormLayout(self)
        form.addRow("Level (centre)", self.center_spin)
        form.addRow("Window (width)", self.width_spin)
        row = QHBoxLayout()
        row.addWidget(self.preset_combo, 1)
        row.addWidget(self.reset_button)
        form.addRow(row)

        self.center_spin.valueChanged.connect(self._emit_window)
        self.width_spin.valueChanged.connect(self._emit_window)
        self.preset_combo.activated.connect(self._emit_preset)
        self.reset_button.clicked.connect(self.resetRequested)

    def set_unit(self, unit: str) -> None:
        suffix = f" {unit}" if unit else ""
        self.center_spin.setSuffix(suffix)
        self.width_spin.setSuffix(suffix)

    def set_presets(self, names: list[str]) -> None:
        with QSignalBlocker(self.preset_combo):
            self.preset_combo.clear()
            self.preset_combo.addItems(names)
            self.preset_combo.setCurrentIndex(-1)

    def show_window(self, center: float, width: float) -> None:
        with QSignalBlocker(self.center_spin), QSignalBlocker(self.width_spin):
            self.center_spin.setValue(center)
            self.width_spin.setValue(width)

    def _emit_window(self) -> None:
        self.windowEdited.emit(self.center_spin.value(), self.width_spin.value())

    def _emit_preset(self, index: int) -> None:
        if index >= 0:
            self.presetChosen.emit(self.preset_combo.itemText(index))
