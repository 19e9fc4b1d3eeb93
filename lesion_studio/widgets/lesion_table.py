"""The lesion table: one row per lesion instance, measured in px and mm.

Two diameters are shown side by side and their headers name the definition: the moment
diameter (P3's d_init, what the size control sets) and the area-equivalent diameter.
"""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.annotation import LesionRecord

COLUMNS = (
    "id", "class", "origin", "slice", "area px", "area mm²",
    "Ø moment (px)", "Ø moment (mm)", "Ø area-eq. (px)", "Ø area-eq. (mm)",
    "centroid (x, y)", "bbox (x0, y0, x1, y1)",
)
_MOMENT_TIP = (
    "Moment diameter: mean of the major and minor axes of the ellipse with the lesion's "
    "second moments (P3's d_init). This is the diameter the size control sets."
)
_AREA_TIP = (
    "Area-equivalent diameter: the diameter of the circle with the lesion's area. "
    "Smaller than the moment diameter for elongated or lobulated lesions."
)
_NO_SPACING = " Millimetres need a valid pixel spacing (— without one)."
#: Header tooltips, by column title.
COLUMN_TOOLTIPS = {
    "Ø moment (px)": _MOMENT_TIP,
    "Ø moment (mm)": _MOMENT_TIP + _NO_SPACING,
    "Ø area-eq. (px)": _AREA_TIP,
    "Ø area-eq. (mm)": _AREA_TIP + _NO_SPACING,
    "area mm²": "Pixel count × row spacing × column spacing." + _NO_SPACING,
}


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


class LesionTable(QWidget):
    """Rows render `LesionRecord`s; selection, relabel and delete go out as signals."""

    lesionSelected = Signal(int)
    deleteRequested = Signal(int)
    relabelRequested = Signal(int)  # give the selected lesion the current class

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for col, title in enumerate(COLUMNS):
            if title in COLUMN_TOOLTIPS:
                self.table.horizontalHeaderItem(col).setToolTip(COLUMN_TOOLTIPS[title])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.relabel_button = QPushButton(qta.icon("fa5s.tag", color="#d7dde5"), "Set class")
        self.relabel_button.setToolTip("Give the selected lesion the current class")
        self.delete_button = QPushButton(qta.icon("fa5s.trash-alt", color="#d7dde5"), "Delete")
        self.delete_button.setToolTip("Delete the selected lesion (Del)")
        self.relabel_button.clicked.connect(lambda: self._emit_for_selected(self.relabelRequested))
        self.delete_button.clicked.connect(lambda: self._emit_for_selected(self.deleteRequested))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.relabel_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self._selected = 0

    def show_records(self, records: list[LesionRecord], selected: int) -> None:
        with QSignalBlocker(self.table):
            self.table.setSortingEnabled(False)
            self.table.setRowCount(len(records))
            for row, rec in enumerate(records):
                cx, cy = rec.centroid_rc[1], rec.centroid_rc[0]
                r0, r1, c0, c1 = rec.bbox
                values = (
                    rec.id, rec.class_name, rec.origin, rec.slice, rec.area_px, rec.area_mm2,
                    rec.moment_diameter_px, rec.moment_diameter_mm,
                    rec.equivalent_diameter_px, rec.equivalent_diameter_mm,
                )
                texts = [
                    str(rec.id), rec.class_name, rec.origin, str(rec.slice), str(rec.area_px),
                    _num(rec.area_mm2),
                    _num(rec.moment_diameter_px), _num(rec.moment_diameter_mm, 2),
                    _num(rec.equivalent_diameter_px), _num(rec.equivalent_diameter_mm, 2),
                    f"{cx:.1f}, {cy:.1f}", f"{c0}, {r0}, {c1}, {r1}",
                ]
                for col, text in enumerate(texts):
                    item = QTableWidgetItem(text)
                    if col < len(values) and isinstance(values[col], (int, float)):
                        item.setData(Qt.ItemDataRole.DisplayRole, values[col])
                        item.setText(text)
                    item.setData(Qt.ItemDataRole.UserRole, rec.id)
                    if col == 1:
                        item.setIcon(qta.icon("fa5s.circle", color="#%02x%02x%02x" % rec.color_rgb))
                    self.table.setItem(row, col, item)
            self.table.setSortingEnabled(True)
            self._select_row_of(selected)
        self._selected = selected

    def _select_row_of(self, label: int) -> None:
        self.table.clearSelection()
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == label:
                self.table.selectRow(row)
                return

    def select(self, label: int) -> None:
        with QSignalBlocker(self.table):
            self._select_row_of(label)
        self._selected = label

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        label = int(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)) if rows else 0
        self._selected = label
        self.lesionSelected.emit(label)

    def _emit_for_selected(self, signal) -> None:
        if self._selected:
            signal.emit(self._selected)
