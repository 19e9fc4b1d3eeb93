"""The dark theme: Fusion style with a dark palette, as reading-room software uses."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

_STYLE_SHEET = """
QFrame#startCard { background: #181b21; border: 1px solid #2a2f38; border-radius: 10px; }
QGroupBox { border: 1px solid #2a2f38; border-radius: 6px; margin-top: 14px; padding-top: 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; color: #c8d0da; }
QStatusBar QLabel { color: #c8d0da; padding: 0 6px; }
QMenu::separator { height: 1px; background: #4a525e; margin: 4px 10px; }
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#1e2127",
        QPalette.ColorRole.WindowText: "#d7dde5",
        QPalette.ColorRole.Base: "#14161a",
        QPalette.ColorRole.AlternateBase: "#1e2127",
        QPalette.ColorRole.ToolTipBase: "#2a2f38",
        QPalette.ColorRole.ToolTipText: "#e6eaf0",
        QPalette.ColorRole.Text: "#d7dde5",
        QPalette.ColorRole.Button: "#262a31",
        QPalette.ColorRole.ButtonText: "#d7dde5",
        QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Highlight: "#3d7eff",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#7fb3ff",
        QPalette.ColorRole.PlaceholderText: "#7d8590",
    }
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5c636e"))
    app.setPalette(palette)
    app.setStyleSheet(_STYLE_SHEET)
