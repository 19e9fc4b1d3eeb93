"""Start the GUI: QApplication, dark theme, main window, files from the command line."""

from __future__ import annotations

import sys

from lesion_studio.core.device import resolve_device
from lesion_studio.core.sample_data import DEMO_RADIOGRAPH


def run_gui(paths: list[str], demo: bool = False, device: str = "auto") -> int:
    """Show the main window and run the event loop; returns the exit code."""
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        print(f"lesion-studio: {exc}", file=sys.stderr)
        return 2

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.widgets.theme import apply_dark_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("lesion-studio")
    app.setOrganizationName("lesion-studio")
    pg.setConfigOptions(antialias=True)
    apply_dark_theme(app)
    window = MainWindow(device=resolved)
    window.show()
    if demo:
        window.open_demo(DEMO_RADIOGRAPH)
    elif paths:
        window.open_paths(paths)
    return app.exec()
