"""The annotation tool panel: tool buttons, brush size in px or mm, class, display options."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QToolButton,
    QWidget,
)

from lesion_studio.core.tool_state import MAX_RADIUS, MIN_RADIUS, PANEL_TOOLS, ToolSettings

#: tool name -> (icon, label, shortcut shown in the tooltip); the Annotate panel's tools only
#: (placing a synthetic lesion is the Synthesize panel's).
TOOL_BUTTONS = {
    "navigate": ("fa5s.mouse-pointer", "Navigate", "Esc"),
    "brush": ("fa5s.paint-brush", "Brush", "B"),
    "eraser": ("fa5s.eraser", "Eraser", "E"),
    "fill": ("fa5s.fill-drip", "Fill", "F"),
    "lasso": ("fa5s.draw-polygon", "Lasso", "L"),
    "select": ("fa5s.hand-pointer", "Select lesion", "S"),
}


class AnnotationPanel(QGroupBox):
    """Shows `ToolSettings` and the class list; every edit goes out as `settingsEdited`."""

    settingsEdited = Signal(dict)  # field -> new value
    classChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Annotate", parent)
        self.tool_buttons: dict[str, QToolButton] = {}
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        grid = QGridLayout()
        for i, name in enumerate(PANEL_TOOLS["annotate"]):
            icon, label, key = TOOL_BUTTONS[name]
            button = QToolButton()
            button.setIcon(qta.icon(icon, color="#d7dde5", color_active="#ffffff"))
            button.setCheckable(True)
            button.setToolTip(f"{label} ({key})")
            button.setAutoRaise(True)
            button.setObjectName(f"tool_{name}")
            button.clicked.connect(lambda _=False, n=name: self.settingsEdited.emit({"tool": n}))
            self.tool_group.addButton(button)
            self.tool_buttons[name] = button
            grid.addWidget(button, 0, i)

        self.radius_spin = QDoubleSpinBox()
        self.radius_spin.setRange(MIN_RADIUS, MAX_RADIUS)
        self.radius_spin.setDecimals(1)
        self.radius_spin.setKeyboardTracking(False)
        self.radius_spin.valueChanged.connect(lambda v: self.settingsEdited.emit({"radius": float(v)}))
        self.unit_combo = QComboBox()
        self.unit_combo.addItems(["px", "mm"])
        self.unit_combo.activated.connect(lambda i: self.settingsEdited.emit({"radius_unit": self.unit_combo.itemText(i)}))
        size_row = QHBoxLayout()
        size_row.addWidget(self.radius_spin, 1)
        size_row.addWidget(self.unit_combo)
        self.unit_note = QLabel()
        self.unit_note.setStyleSheet("color: #9aa4b2; font-size: 11px;")
        self.unit_note.setWordWrap(True)

        self.class_combo = QComboBox()
        self.class_combo.activated.connect(lambda i: self.classChosen.emit(self.class_combo.itemData(i)))
        self.layer_combo = QComboBox()
        self.layer_combo.addItem("Lesions", "labels")
        self.layer_combo.addItem("Location map", "location")
        self.layer_combo.activated.connect(
            lambda i: self.settingsEdited.emit({"target_layer": self.layer_combo.itemData(i)})
        )
        self.preserve_check = QCheckBox("Don't paint over other lesions")
        self.preserve_check.toggled.connect(lambda v: self.settingsEdited.emit({"preserve_other": bool(v)}))

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.valueChanged.connect(lambda v: self.settingsEdited.emit({"opacity": v / 100.0}))
        self.contour_check = QCheckBox("Contours only")
        self.contour_check.toggled.connect(lambda v: self.settingsEdited.emit({"contour_only": bool(v)}))
        self.show_labels_check = QCheckBox("Lesions")
        self.show_labels_check.toggled.connect(lambda v: self.settingsEdited.emit({"show_labels": bool(v)}))
        self.show_location_check = QCheckBox("Location map")
        self.show_location_check.toggled.connect(lambda v: self.settingsEdited.emit({"show_location": bool(v)}))
        visible_row = QHBoxLayout()
        visible_row.addWidget(self.show_labels_check)
        visible_row.addWidget(self.show_location_check)

        form = QFormLayout(self)
        form.addRow(grid)
        form.addRow("Brush radius", size_row)
        form.addRow(self.unit_note)
        form.addRow("Class", self.class_combo)
        form.addRow("Paint on", self.layer_combo)
        form.addRow(self.preserve_check)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow(self.contour_check)
        form.addRow("Show", visible_row)

    def show_settings(self, settings: ToolSettings) -> None:
        widgets = (
            self.radius_spin, self.unit_combo, self.layer_combo, self.preserve_check, self.opacity_slider,
            self.contour_check, self.show_labels_check, self.show_location_check,
        )
        blockers = [QSignalBlocker(w) for w in widgets]
        self.show_tool(settings.tool)
        self.radius_spin.setValue(settings.radius)
        self.unit_combo.setCurrentText(settings.radius_unit)
        self.layer_combo.setCurrentIndex(self.layer_combo.findData(settings.target_layer))
        self.preserve_check.setChecked(settings.preserve_other)
        self.opacity_slider.setValue(int(round(settings.opacity * 100)))
        self.contour_check.setChecked(settings.contour_only)
        self.show_labels_check.setChecked(settings.show_labels)
        self.show_location_check.setChecked(settings.show_location)
        del blockers

    def show_tool(self, tool: str) -> None:
        """Check the tool's button; no button is checked while another panel's tool is active."""
        button = self.tool_buttons.get(tool)
        if button is not None:
            button.setChecked(True)
            return
        self.tool_group.setExclusive(False)  # an exclusive group cannot uncheck its last button
        for other in self.tool_buttons.values():
            other.setChecked(False)
        self.tool_group.setExclusive(True)

    def set_mm_available(self, available: bool) -> None:
        """Without pixel spacing the brush is sized in px only, and the panel says why."""
        item = self.unit_combo.model().item(1)
        item.setEnabled(available)
        self.unit_note.setText("" if available else "Spacing unknown: brush sizes are in pixels.")
        self.unit_note.setVisible(not available)

    def set_classes(self, classes: list[tuple[str, tuple[int, int, int]]], current: str) -> None:
        with QSignalBlocker(self.class_combo):
            self.class_combo.clear()
            for index, (name, rgb) in enumerate(classes):
                swatch = qta.icon("fa5s.circle", color="#%02x%02x%02x" % rgb)
                shortcut = f"  ({index + 1})" if index < 9 else ""
                self.class_combo.addItem(swatch, f"{name}{shortcut}", name)
            self.class_combo.setCurrentIndex(self.class_combo.findData(current))
