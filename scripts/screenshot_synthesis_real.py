"""Render a real-nodule insertion and a removal on the demo radiograph (RG1_UNCR.dcm).

Writes `docs/screenshot_synthesis_real.png` (the main window after both were accepted) and
`docs/synthesis_real_before_after.png` (before / after crops of both, for the README and for
looking at the pixels). The removed lesion is one of RG1's own nodular opacities, outlined
here with a painted disc; the insertion is the default `real-nodule` method at 60 px.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LESION_STUDIO_HOME", "/tmp/lesion-studio-screenshot")

DOCS = Path(__file__).resolve().parents[1] / "docs"
INSERT_AT = (1010.0, 1280.0)  # lung field between two metastases (row, col)
INSERT_DIAMETER_PX = 110.0  # about 21 mm at RG1's ~0.19 mm/px
OPACITY_AT = (862.0, 1462.0)  # one of RG1's real nodular opacities
OPACITY_RADIUS_PX = 86  # the opacity and its blurred rim, as a reader would outline it


def _wait(app, flag: list) -> None:
    """Run the event loop until the preview arrives (a busy processEvents() loop crashes
    PySide6 6.x with 'none_dealloc' after some ten thousand turns)."""
    import time

    while not flag:
        app.processEvents()
        time.sleep(0.01)


def _grey(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((pixels - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def main() -> int:
    import cv2
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.widgets.theme import apply_dark_theme

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
    original = window.state.image.pixels.copy()
    syn = window.synthesis
    done: list = []
    syn.previewShown.connect(lambda: done.append(True))

    syn.set_mode("inpaint")
    syn.choose_model("real-nodule")
    syn.set_size(INSERT_DIAMETER_PX)
    syn.seed = 4
    syn.request_preview(INSERT_AT)
    _wait(app, done)
    inserted_label = syn.accept()

    rows, cols = np.ogrid[: original.shape[0], : original.shape[1]]
    opacity = (rows - OPACITY_AT[0]) ** 2 + (cols - OPACITY_AT[1]) ** 2 <= OPACITY_RADIUS_PX**2
    doc = window.document
    doc.paint_mask(opacity, doc.next_lesion_id())
    syn.set_mode("remove")
    syn.choose_model("auto-fill")
    done.clear()
    syn.request_preview(OPACITY_AT)
    _wait(app, done)
    syn.accept()
    window.tools.update(tool="navigate")
    window.annotations.toggle_overlays()  # masks hidden: the pixels are what is being shown
    from PySide6.QtCore import QRectF

    window.canvas.view_box.setRange(rect=QRectF(1000.0, 690.0, 650.0, 420.0), padding=0.0)
    for _ in range(10):
        app.processEvents()
    window.statusBar().clearMessage()
    out = DOCS / "screenshot_synthesis_real.png"
    window.grab().save(str(out))

    after = window.state.image.pixels
    lo, hi = np.percentile(original, [1, 99])
    tiles = []
    for (r, c), half in ((INSERT_AT, 90), (OPACITY_AT, 120)):
        r0, c0 = int(r) - half, int(c) - half
        pair = [_grey(img[r0 : r0 + 2 * half, c0 : c0 + 2 * half], lo, hi) for img in (original, after)]
        pair = [cv2.resize(p, (360, 360), interpolation=cv2.INTER_AREA) for p in pair]
        tiles.append(np.hstack([pair[0], np.full((360, 6), 255, np.uint8), pair[1]]))
    sheet = np.vstack([tiles[0], np.full((6, tiles[0].shape[1]), 255, np.uint8), tiles[1]])
    cv2.imwrite(str(DOCS / "synthesis_real_before_after.png"), sheet)
    print(out, "inserted lesion", inserted_label)
    window.ask_unsaved_changes = lambda: "discard"
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
