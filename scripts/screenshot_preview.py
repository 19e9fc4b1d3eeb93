"""Render the synthesis preview on the demo radiograph to docs/screenshot_preview.png."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LESION_STUDIO_HOME", "/tmp/lesion-studio-screenshot")


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.widgets.theme import apply_dark_theme

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "screenshot_preview.png"
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    window = MainWindow(offer_recovery=False)
    window.resize(1500, 950)
    window.show()
    window.open_demo("RG1_UNCR.dcm")
    window.loader.wait()
    for _ in range(30):
        app.processEvents()
    window.state.apply_preset("Auto (1–99 %)")
    window.side_tabs.setCurrentIndex(1)
    syn = window.synthesis
    syn.set_mode("inpaint")
    syn.choose_model("demo_texture_inpaint")  # the learned demo model (64 px input: at most ~26 px)
    syn.set_size(24.0)
    window.tools.update(tool="place")
    done = []
    syn.previewShown.connect(lambda: done.append(True))
    syn.request_preview((820.0, 1240.0))
    while not done:  # a busy processEvents() loop crashes PySide6 6.x ('none_dealloc')
        app.processEvents()
        time.sleep(0.01)
    window.canvas.zoom_at(2.2, window.canvas.view.mapFromScene(window.canvas.pixel_to_scene(820, 1240)))
    for _ in range(10):
        app.processEvents()
    window.statusBar().clearMessage()
    window.grab().save(str(out))
    print(out)
    window.confirm_discard_changes = lambda: True
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
