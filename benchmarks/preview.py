"""Click-to-preview-shown latency of the synthesis preview with a small model.

Runs the real main window offscreen on the demo head CT: a click builds the request, the
worker thread runs the synthesizer, the result is drawn. Target: ≤ 500 ms on the 2-core CPU,
≤ 100 ms on a GPU. Prints JSON lines.

    python benchmarks/preview.py [--checkpoint lesion_studio/resources/models/ct_nodule_inpaint] [--n 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_device, emit, summarize_ms  # noqa: E402

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "lesion_studio" / "resources" / "models" / "ct_nodule_inpaint"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--diameter-mm", type=float, default=12.0)
    args = parser.parse_args()
    os.environ.setdefault("LESION_STUDIO_HOME", str(Path.cwd() / ".bench-home"))

    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.core.imageio import load_image
    from lesion_studio.core.sample_data import sample_file

    app = QApplication.instance() or QApplication([])
    window = MainWindow(device=args.device, offer_recovery=False)
    window.resize(1400, 900)
    window.show()
    window.state.set_image(load_image(sample_file("693_UNCR.dcm")))
    window.show_viewer()
    app.processEvents()
    syn = window.synthesis
    if not syn.add_checkpoint(args.checkpoint):
        print(f"no usable checkpoint at {args.checkpoint}", file=sys.stderr)
        return 2
    syn.set_size(args.diameter_mm)
    shown: list[float] = []
    syn.previewShown.connect(lambda: (window.canvas.view.viewport().repaint(), shown.append(time.perf_counter())))

    def one(centre) -> float:
        before = len(shown)
        start = time.perf_counter()
        syn.request_preview(centre)
        while len(shown) == before:
            app.processEvents()
            time.sleep(0.0005)
        return shown[-1] - start

    one((250.0, 250.0))  # warm-up: torch import, model load, first kernels
    samples = [one((200.0 + 7 * (k % 10), 180.0 + 11 * (k % 7))) for k in range(args.n)]
    info = syn.models.synthesizer(syn.model.stem)
    device = cpu_device() if args.device == "cpu" else args.device
    emit({
        "benchmark": "preview.click_to_shown",
        "checkpoint": syn.model.name,
        "family": info.family,
        "model_input_px": info.patch_px,
        "device": device,
        "target_ms": 500 if args.device == "cpu" else 100,
        **summarize_ms(samples),
    })
    window.confirm_discard_changes = lambda: True
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
