"""Screenshots of the main window at 1366 × 768, the smallest common laptop screen (issue 16).

    QT_QPA_PLATFORM=offscreen python scripts/screenshot_1366.py [OUT_DIR]   # default: docs/

Writes three PNGs:

- `screenshot_1366_main.png`: the demo radiograph (RG1) on the Annotate tab, one painted lesion.
- `screenshot_1366_synthesize.png`: the Synthesize tab with a real-nodule preview and 4 variants.
- `screenshot_1366_training.png`: the jobs dock with a tiny pix2pix phantom training mid-run
  (steps, rate, ETA, log, loss and validation plots with points).

Everything runs on the CPU in a throwaway home folder; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_TMP = Path(tempfile.mkdtemp(prefix="lesion_studio_1366_"))
os.environ.setdefault("LESION_STUDIO_HOME", str(_TMP / "home"))

SCREEN = (1366, 768)
DOCS = Path(__file__).resolve().parents[1] / "docs"
LESION_AT = (862.0, 1462.0)  # one of RG1's nodular opacities (row, col), painted as lesion 1
LESION_RADIUS_PX = 80
PREVIEW_AT = (1010.0, 1280.0)  # a lung field between two metastases
PREVIEW_DIAMETER_PX = 110.0  # about 21 mm at RG1's ~0.19 mm/px
CAPTURE_AT_STEP = 120  # of TRAIN_STEPS: mid-run, with a few validation points
TRAIN_STEPS = 400
DOCK_HEIGHT_PX = 600  # the jobs dock as tall as the window lets it be (the viewer shrinks)


def _pump(app, until=lambda: True, min_turns: int = 10, timeout_s: float = 600.0) -> None:
    """Run the event loop until `until()` (sleeping between turns: a busy processEvents()
    loop crashes PySide6 6.x after some ten thousand turns)."""
    start = time.monotonic()
    turns = 0
    while turns < min_turns or not until():
        app.processEvents()
        time.sleep(0.01)
        turns += 1
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("the window did not reach the state to capture")


def _main_window(app, window, out: Path) -> None:
    window.open_demo("RG1_UNCR.dcm")
    window.loader.wait()
    _pump(app, lambda: window.state.image is not None, min_turns=30)
    doc = window.document
    rows, cols = np.ogrid[: doc.plane_shape[0], : doc.plane_shape[1]]
    disc = (rows - LESION_AT[0]) ** 2 + (cols - LESION_AT[1]) ** 2 <= LESION_RADIUS_PX**2
    with doc.transaction("screenshot lesion"):
        label = doc.new_lesion()
        doc.paint_mask(disc, label)
    doc.selected_id = label
    window.tools.update(tool="brush", panel="annotate")
    window.annotations.flush()
    window.canvas.fit()
    window.statusBar().showMessage("Opened RG1_UNCR.dcm (demo radiograph)")
    _pump(app, min_turns=20)
    window.grab().save(str(out))


def _synthesize_tab(app, window, out: Path) -> None:
    syn = window.synthesis
    window.tools.update(tool="place")  # the place tool brings the Synthesize tab
    syn.set_mode("inpaint")
    syn.choose_model("real-nodule")
    syn.set_size(PREVIEW_DIAMETER_PX)
    shown: list[bool] = []
    syn.previewShown.connect(lambda: shown.append(True))
    syn.request_preview(PREVIEW_AT)
    _pump(app, lambda: bool(shown))
    shown.clear()
    window.synthesis_panel.variants_spin.setValue(4)
    window.synthesis_panel.variants_button.click()
    _pump(app, lambda: bool(shown))
    from PySide6.QtCore import QRectF

    r, c = PREVIEW_AT
    window.canvas.view_box.setRange(rect=QRectF(c - 520, r - 330, 1040, 660), padding=0.0)
    window.statusBar().clearMessage()
    _pump(app, min_turns=20)
    window.grab().save(str(out))
    syn.reject()


def _training(app, window, out: Path) -> None:
    from PySide6.QtCore import Qt

    from lesion_studio.core.phantom import generate_phantom_dataset
    from lesion_studio.models.config import default_config

    dataset = _TMP / "phantom_chest"
    generate_phantom_dataset(dataset, "chest", 16, size_px=128)
    config = default_config("pix2pix", dataset=str(dataset), out_dir=str(_TMP / "run"), steps=TRAIN_STEPS,
                            val_every=20, sample_every=20, checkpoint_every=200, log_every=2, device="cpu")
    config.model = dataclasses.replace(config.model, base_channels=16, disc_channels=16, patch_px=32,
                                       num_downs=5, batch_size=8)
    jobs = window.jobs_ui
    record = jobs.start_training(config, "pix2pix phantom chest (tiny, CPU)")
    window.resizeDocks([jobs.dock], [DOCK_HEIGHT_PX], Qt.Orientation.Vertical)
    _pump(app, lambda: record.step >= CAPTURE_AT_STEP or record.state.finished)
    _pump(app, min_turns=40)  # the staggered redraws and the latest sample catch up
    jobs.dashboard.refresh()
    _pump(app, min_turns=5)
    window.grab().save(str(out))
    jobs.shutdown()


def main(out_dir: str | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.widgets.theme import apply_dark_theme

    folder = Path(out_dir) if out_dir else DOCS
    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)
    window = MainWindow(device="cpu", offer_recovery=False)
    window.resize(*SCREEN)
    window.show()
    _pump(app)
    shots = {
        "main": _main_window, "synthesize": _synthesize_tab, "training": _training,
    }
    for name, shoot in shots.items():
        path = folder / f"screenshot_1366_{name}.png"
        shoot(app, window, path)
        print(f"wrote {path}")
    window.ask_unsaved_changes = lambda: "discard"
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
