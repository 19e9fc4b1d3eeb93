"""Exporting a dashboard: the save dialog every dashboard asks with (PNG, SVG or CSV), and a
whole widget rendered as SVG or grabbed as PNG.

What goes into the CSV, and what a dashboard draws, stay with each dashboard.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QFileDialog, QWidget

from lesion_studio.core.errors import ConfigError

EXPORT_FILTERS = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)", "csv": "CSV table (*.csv)"}


def ask_export_path(parent: QWidget, kind: str, stem: str) -> str | None:
    """Ask where to save a `kind` ("png", "svg" or "csv") export, suggesting `stem.kind`; None when cancelled."""
    path, _ = QFileDialog.getSaveFileName(parent, f"Export {kind.upper()}", f"{stem}.{kind}", EXPORT_FILTERS[kind])
    return path or None


def widget_png(widget: QWidget, path: str | Path) -> Path:
    """`widget` as it is on screen, saved as a PNG screenshot; ConfigError when it cannot be written."""
    if not widget.grab().save(str(path)):
        raise ConfigError("cannot write the PNG", path)
    return Path(path)


def widget_svg(widget: QWidget, path: str | Path) -> Path:
    """`widget` rendered into an SVG drawing of its size (vector plots and text), titled as its window."""
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(widget.size())
    generator.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    generator.setTitle(widget.windowTitle())
    painter = QPainter(generator)
    widget.render(painter, QPoint(0, 0))
    painter.end()
    return Path(path)
