"""Time to load and first display RG1_J2KR.dcm, and slice switching on a 512×512×300 volume.

Runs the real main window offscreen. Prints JSON lines; targets on a 2-core machine:
≤ 1.0 s to first display, ≤ 16 ms p95 per slice switch.

    python benchmarks/open_image.py [--repeats 5] [--switches 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

from _common import cpu_device, emit, summarize_ms  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--switches", type=int, default=300)
    args = parser.parse_args()

    import tempfile

    # a fresh home: no "recover autosaved work?" question from an earlier run
    os.environ.setdefault("LESION_STUDIO_HOME", tempfile.mkdtemp(prefix="lesion-studio-bench-"))
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.core.image import ImageSource, MedicalImage, Window
    from lesion_studio.core.sample_data import sample_file
    from lesion_studio.widgets.theme import apply_dark_theme

    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    window = MainWindow(device="cpu", offer_recovery=False)
    window.ask_unsaved_changes = lambda: "discard"  # offscreen nobody answers a dialog: it never exited
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    viewport = window.canvas.view.viewport()

    path = sample_file("RG1_J2KR.dcm")
    first_display = []
    for _ in range(args.repeats):
        window.close_image()
        app.processEvents()
        shown = []
        window.loader.loaded.connect(lambda _img: shown.append(True))
        start = time.perf_counter()
        window.open_path(path)
        while not shown:
            app.processEvents()
            time.sleep(0.001)
        app.processEvents()
        viewport.repaint()  # the first frame is on screen when this returns
        first_display.append(time.perf_counter() - start)
        window.loader.loaded.disconnect()
        window.loader.loaded.connect(window._on_loaded)
    emit({
        "benchmark": "open_image.first_display",
        "file": path.name,
        "device": cpu_device(),
        "target_s": 1.0,
        **{k.replace("_ms", "_s"): round(v / 1000.0, 4) for k, v in summarize_ms(first_display).items() if k != "n"},
        "n": len(first_display),
    })

    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 300.0, size=(300, 512, 512)).astype(np.float32)
    image = MedicalImage(
        pixels=volume, spacing_mm=(1.0, 0.7, 0.7), modality="CT", window=Window(40.0, 400.0),
        window_source="preset", source=ImageSource(path=Path("synthetic-volume"), format="memory"), unit="HU",
    )
    window.state.set_image(image)
    window.show_viewer()
    app.processEvents()
    switches = []
    for k in range(args.switches):
        start = time.perf_counter()
        window.state.step_slice(1 if (k // 150) % 2 == 0 else -1)
        viewport.repaint()
        switches.append(time.perf_counter() - start)
    emit({
        "benchmark": "open_image.slice_switch",
        "volume": "512x512x300 float32",
        "device": cpu_device(),
        "target_p95_ms": 16.0,
        **summarize_ms(switches),
    })
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
