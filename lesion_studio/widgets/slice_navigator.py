"""Slice slider with the index shown as `slice i / n`."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget


class SliceNavigator(QWidget):
    """A horizontal slider over slices; hidden for 2D images."""

    sliceRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimum(0)
        self.slider.setPageStep(10)
        self.label = QLabel()
        self.label.setMinimumWidth(110)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(QLabel("Slice"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self.sliceRequested)

    def set_count(self, n_slices: int) -> None:
        with QSignalBlocker(self.slider):
            self.slider.setMaximum(max(0, n_slices - 1))
        self.setVisible(n_slices > 1)

    def show_slice(self, index: int, n_slices: int) -> None:
        with QSignalBlocker(self.slider):
            self.slider.setValue(index)
        self.label.setText(f"slice {index + 1} / {n_slices}")
