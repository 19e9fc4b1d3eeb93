"""Start the GUI: QApplication, dark theme, main window, files from the command line."""

from __future__ import annotations

import os
import sys
import time

from lesion_studio.core.device import resolve_device
from lesion_studio.core.sample_data import DEMO_RADIOGRAPH


STARTUP_PROBE_ENV = "LESION_STUDIO_STARTUP_PROBE"
"""When set, print `STARTUP first_paint=<epoch s>` on the window's first paint (and
`STARTUP image_shown=<epoch s>` once an image given on the command line is on screen), then quit.
Used by `benchmarks/startup.py`."""


def _install_startup_probe(app, window, wait_for_image: bool) -> None:
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
            if event.type() == QEvent.Type.Paint:
                window.removeEventFilter(self)
                print(f"STARTUP first_paint={time.time():.6f}", flush=True)
                if not wait_for_image:
                    QTimer.singleShot(0, app.quit)
            return False

    def image_shown(_image) -> None:
        window.repaint()  # the viewer page with the image, painted now
        print(f"STARTUP image_shown={time.time():.6f}", flush=True)
        QTimer.singleShot(0, app.quit)

    probe = FirstPaint(window)
    window.installEventFilter(probe)
    if wait_for_image:
        window.loader.loaded.connect(image_shown)
        window.loader.failed.connect(lambda _error: QTimer.singleShot(0, app.quit))
    window.confirm_discard_changes = lambda: True  # quit without asking


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
    if os.environ.get(STARTUP_PROBE_ENV):
        _install_startup_probe(app, window, wait_for_image=demo or bool(paths))
    window.show()
    if demo:
        window.open_demo(DEMO_RADIOGRAPH)
    elif paths:
        window.open_paths(paths)
    return app.exec()
