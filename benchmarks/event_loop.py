"""Event-loop gaps of the main window while work runs in the background (JSON lines).

Two scenarios that used to be wall-clock assertions in tests (they failed on loaded machines):

- `training`: a tiny pix2pix training on a phantom dataset runs as a GUI job (one torch
  thread); a 10 ms timer measures the longest gap of the UI thread. Target ≤ 50 ms.
- `preview`: the synthesis preview with the demo texture checkpoint computes 12 variants on
  the head CT; a 5 ms timer measures the longest gap. Target ≤ 50 ms.

    python benchmarks/event_loop.py [--scenario training|preview|all]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_device, emit  # noqa: E402

DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "lesion_studio" / "resources" / "models" / "ct_nodule_inpaint"


class GapMeter:
    """Longest interval between the ticks of a fast QTimer: how long the UI thread was blocked."""

    def __init__(self, interval_ms: int) -> None:
        from PySide6.QtCore import QElapsedTimer, QTimer

        self.gaps_ms: list[int] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0

    def _tick(self) -> None:
        now = self._clock.elapsed()
        self.gaps_ms.append(now - self._last)
        self._last = now

    def start(self) -> None:
        self._clock.start()
        self._last = self._clock.elapsed()
        self._timer.start()

    def stop(self) -> dict:
        self._timer.stop()
        gaps = sorted(self.gaps_ms) or [0]
        return {"ticks": len(self.gaps_ms), "max_gap_ms": gaps[-1], "p99_gap_ms": gaps[int(0.99 * (len(gaps) - 1))]}


def _wait(app, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.001)


def training(app, window, work: Path) -> dict:
    """Max event-loop gap while a tiny CPU training runs as a job."""
    from lesion_studio.core.jobs import JobState
    from lesion_studio.core.phantom import generate_phantom_dataset
    from lesion_studio.models.config import default_config

    dataset = work / "phantom"
    generate_phantom_dataset(dataset, "chest", 10, size_px=96)
    config = default_config("pix2pix", dataset=str(dataset), out_dir=str(work / "run"), steps=120, val_every=20,
                            sample_every=20, checkpoint_every=40, log_every=1, device="cpu", num_threads=1)
    config.model = dataclasses.replace(config.model, base_channels=8, disc_channels=8, patch_px=32, num_downs=5,
                                       batch_size=4, lr_g=1e-3, lr_d=1e-4)
    jobs = window.jobs_ui
    jobs.manager.cpu_threads = 1
    record = jobs.start_training(config)
    _wait(app, lambda: record.state is JobState.RUNNING and record.step >= 1, 120)
    meter = GapMeter(10)
    meter.start()
    started = time.perf_counter()
    _wait(app, lambda: record.state.finished, 300)
    result = meter.stop()
    return {"benchmark": "event_loop.training", "state": record.state.value, "busy_s": round(time.perf_counter() - started, 2),
            "target_ms": 50, "load_1min": round(os.getloadavg()[0], 2), **result}


def preview(app, window, work: Path) -> dict:
    """Max event-loop gap while the synthesis preview computes 12 variants."""
    from lesion_studio.core.imageio import load_image
    from lesion_studio.core.sample_data import sample_file

    window.state.set_image(load_image(sample_file("693_UNCR.dcm")))
    window.show_viewer()
    syn = window.synthesis
    if not syn.add_checkpoint(DEMO_CHECKPOINT):
        return {"benchmark": "event_loop.preview", "error": f"no checkpoint at {DEMO_CHECKPOINT}"}
    syn.set_size(8.0)
    shown: list[int] = []
    syn.previewShown.connect(lambda: shown.append(1))
    syn.request_preview((250.0, 250.0))  # warm up: torch import, model load
    _wait(app, lambda: bool(shown), 120)
    meter = GapMeter(5)
    meter.start()
    started = time.perf_counter()
    syn.request_preview((260.0, 240.0), n_variants=12)
    _wait(app, lambda: len(shown) >= 2, 120)
    result = meter.stop()
    return {"benchmark": "event_loop.preview", "busy_s": round(time.perf_counter() - started, 2), "target_ms": 50,
            "load_1min": round(os.getloadavg()[0], 2), **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("training", "preview", "all"), default="all")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-event-loop-"))
    os.environ.setdefault("LESION_STUDIO_HOME", str(work / "home"))

    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.widgets.theme import apply_dark_theme

    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    scenarios = ("training", "preview") if args.scenario == "all" else (args.scenario,)
    for name in scenarios:
        window = MainWindow(device="cpu", offer_recovery=False)
        window.resize(1400, 900)
        window.show()
        app.processEvents()
        record = {"training": training, "preview": preview}[name](app, window, work)
        record["device"] = cpu_device()
        emit(record)
        window.confirm_discard_changes = lambda: True
        window.jobs_ui.shutdown(60_000)
        window.close()
        app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
