"""Screenshot of the jobs dock and training dashboard during a tiny phantom training.

    QT_QPA_PLATFORM=offscreen python scripts/screenshot_training_dashboard.py docs/screenshot_dashboard.png

A short finished run is ticked for comparison, then a second run is captured mid-training.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path


def main(out_path: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="lesion_studio_shot_"))
    os.environ.setdefault("LESION_STUDIO_HOME", str(tmp / "home"))
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from lesion_studio.app.jobs_ui import install_jobs_ui
    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.core.phantom import generate_phantom_dataset
    from lesion_studio.models.config import default_config
    from lesion_studio.widgets.theme import apply_dark_theme

    apply_dark_theme(app)
    dataset = tmp / "phantom_chest"
    generate_phantom_dataset(dataset, "chest", 16, size_px=128)

    def config(name: str, steps: int, lr_g: float):
        cfg = default_config("pix2pix", dataset=str(dataset), out_dir=str(tmp / name), steps=steps, val_every=25,
                             sample_every=25, checkpoint_every=100, log_every=2, device="cpu")
        cfg.model = dataclasses.replace(cfg.model, base_channels=16, disc_channels=16, patch_px=32, num_downs=5,
                                        batch_size=8, lr_g=lr_g, lr_d=2e-4)
        return cfg

    window = MainWindow(device="cpu", offer_recovery=False)
    window.resize(1500, 1000)
    window.show()
    jobs = install_jobs_ui(window)
    baseline = jobs.start_training(config("baseline_lr2e-4", 300, 2e-4), "pix2pix baseline (lr 2e-4)")
    while not baseline.state.finished:
        app.processEvents()
        time.sleep(0.01)
    run = jobs.start_training(config("run_lr1e-3", 600, 1e-3), "pix2pix phantom chest (lr 1e-3)")
    jobs.panel.set_compared(baseline.id, True)
    window.resizeDocks([jobs.dock], [640], Qt.Orientation.Vertical)
    while run.step < 330:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(40):  # let the staggered redraws and the samples catch up
        app.processEvents()
        time.sleep(0.02)
    jobs.dashboard.refresh()
    app.processEvents()
    window.grab().save(out_path)
    jobs.shutdown()
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot_dashboard.png"))
