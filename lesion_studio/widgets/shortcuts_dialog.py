"""Help ▸ Shortcuts: every keyboard shortcut in one table."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("B", "Brush"),
    ("E", "Eraser"),
    ("F", "Flood fill"),
    ("L", "Lasso fill (drag a closed outline)"),
    ("S", "Select a lesion by clicking it"),
    ("P", "Place a synthetic lesion (click; see the Synthesize panel)"),
    ("Space", "Synthesis preview: show the original / the result"),
    ("Esc", "Navigate (left-drag pans again)"),
    ("[  /  ]", "Smaller / larger brush"),
    ("1 – 9", "Lesion class 1 to 9"),
    ("H", "Hide / show the mask overlays"),
    ("Shift + stroke", "Brush, fill or lasso continues the selected lesion; eraser erases only it"),
    ("Del", "Delete the selected lesion"),
    ("Ctrl+Z", "Undo the last stroke or command"),
    ("Ctrl+Shift+Z  /  Ctrl+Y", "Redo"),
    ("Ctrl+O", "Open file"),
    ("Ctrl+Shift+O", "Open DICOM folder"),
    ("Ctrl+S", "Save session"),
    ("Ctrl+0  /  Home", "Fit image to window"),
    ("Ctrl+1", "1:1 pixels"),
    ("Ctrl+R", "Reset window/level"),
    ("Right-drag", "Window (horizontal) / level (vertical)"),
    ("Wheel", "Zoom at the cursor"),
    ("Middle-drag", "Pan (any tool)"),
    ("PageUp / PageDown, Ctrl+wheel", "Previous / next slice"),
)


class ShortcutsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(560, 640)
        table = QTableWidget(len(SHORTCUTS), 2)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        for row, (keys, action) in enumerate(SHORTCUTS):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(action))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.table = table
