"""The start page: open a file or folder, reopen a recent one, or try a demo image."""

from __future__ import annotations

from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class StartPage(QWidget):
    """Buttons and lists only; every choice goes out as a signal."""

    openFileRequested = Signal()
    openFolderRequested = Signal()
    recentChosen = Signal(str)
    demoChosen = Signal(str)  # demo file name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("lesion-studio")
        title.setObjectName("startTitle")
        title.setStyleSheet("font-size: 28px; font-weight: 600;")
        subtitle = QLabel(
            "Open a radiograph or CT, outline lesions, and preview synthetic ones for training data."
        )
        subtitle.setStyleSheet("color: #9aa4b2;")

        self.open_file_button = self._big_button("fa5s.file-medical", "Open file…", "DICOM, NIfTI, NRRD, MHA, PNG, TIFF")
        self.open_folder_button = self._big_button("fa5s.folder-open", "Open DICOM folder…", "a folder holding one series")
        self.open_file_button.clicked.connect(self.openFileRequested)
        self.open_folder_button.clicked.connect(self.openFolderRequested)

        self.recent_list = QListWidget()
        self.recent_list.setObjectName("recentList")
        self.recent_list.itemActivated.connect(lambda item: self.recentChosen.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.demo_list = QListWidget()
        self.demo_list.setObjectName("demoList")
        self.demo_list.itemActivated.connect(lambda item: self.demoChosen.emit(item.data(Qt.ItemDataRole.UserRole)))

        buttons = QHBoxLayout()
        buttons.addWidget(self.open_file_button)
        buttons.addWidget(self.open_folder_button)
        buttons.addStretch(1)

        lists = QHBoxLayout()
        lists.addLayout(self._titled("Recent", self.recent_list), 3)
        lists.addLayout(self._titled("Demo images", self.demo_list), 2)

        card = QFrame()
        card.setObjectName("startCard")
        inner = QVBoxLayout(card)
        inner.setContentsMargins(32, 28, 32, 28)
        inner.setSpacing(14)
        inner.addWidget(title)
        inner.addWidget(subtitle)
        inner.addSpacing(8)
        inner.addLayout(buttons)
        inner.addSpacing(8)
        inner.addLayout(lists, 1)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(48, 36, 48, 36)
        outer.addWidget(card)

    @staticmethod
    def _big_button(icon: str, text: str, tip: str) -> QPushButton:
        button = QPushButton(qta.icon(icon, color="#d7dde5"), f"  {text}")
        button.setIconSize(QSize(22, 22))
        button.setMinimumHeight(44)
        button.setToolTip(tip)
        return button

    @staticmethod
    def _titled(text: str, widget: QWidget) -> QVBoxLayout:
        layout = QVBoxLayout()
        label = QLabel(text)
        label.setStyleSheet("font-weight: 600; color: #c8d0da;")
        layout.addWidget(label)
        layout.addWidget(widget, 1)
        return layout

    def set_recent(self, paths: list[Path]) -> None:
        self.recent_list.clear()
        if not paths:
            item = QListWidgetItem("No recent files yet")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent_list.addItem(item)
            return
        for path in paths:
            item = QListWidgetItem(qta.icon("fa5s.history", color="#9aa4b2"), f"{path.name}    —    {path.parent}")
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            self.recent_list.addItem(item)

    def set_demos(self, demos: dict[str, str]) -> None:
        self.demo_list.clear()
        for label, file_name in demos.items():
            icon = "fa5s.x-ray" if "radiograph" in label.lower() else "fa5s.brain"
            item = QListWidgetItem(qta.icon(icon, color="#7fb3ff"), f"{label}  ({file_name})")
            item.setData(Qt.ItemDataRole.UserRole, file_name)
            self.demo_list.addItem(item)
