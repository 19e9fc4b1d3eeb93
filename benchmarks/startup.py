"""Cold start: process start to the first painted window (JSON lines).

Each run is a fresh subprocess (offscreen Qt). The time counts from just before the process is
spawned to the window's first paint event, so it includes the interpreter, every import and the
window's construction:

- `lesion-studio --demo` with `LESION_STUDIO_STARTUP_PROBE=1`: the app prints the epoch time of
  its first paint (and of the demo radiograph being on screen), then quits;
- a bare PySide6 `QMainWindow`, measured the same way in the same run, as the reference: the
  ratio app / bare is what the code controls, the absolute numbers depend on the machine.

The median of `--runs` alternating runs is reported with `os.getloadavg()` before and after.
Target: ≤ 2.0 s to the first painted window on the development machine.

    python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_device, emit  # noqa: E402

BARE_WINDOW = """
import sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
window = QMainWindow()
window.resize(1280, 800)
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            window.removeEventFilter(self)
            print(f"STARTUP first_paint={time.time():.6f}", flush=True)
            QTimer.singleShot(0, app.quit)
        return False
probe = FirstPaint(window)
window.installEventFilter(probe)
window.show()
sys.exit(app.exec())
"""

APP = "import sys; from lesion_studio.app.cli import main; sys.exit(main(['--demo']))"


def _run(code: str, env: dict) -> dict[str, float]:
    """Spawn `python -c code`; seconds from the spawn to each `STARTUP key=epoch` line."""
    start = time.time()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    marks = {}
    for line in result.stdout.splitlines():
        if line.startswith("STARTUP "):
            key, value = line.split()[1].split("=")
            marks[key] = float(value) - start
    if "first_paint" not in marks:
        raise RuntimeError(f"no first paint reported: {result.stdout[-2000:]} {result.stderr[-2000:]}")
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LESION_STUDIO_STARTUP_PROBE="1",
                   LESION_STUDIO_HOME=home)
        load_before = os.getloadavg()
        _run(APP, env)  # warm the file cache (.pyc, shared libraries): a second start, not a first boot
        bare, app_paint, app_image = [], [], []
        for _ in range(args.runs):
            bare.append(_run(BARE_WINDOW, env)["first_paint"])
            marks = _run(APP, env)
            app_paint.append(marks["first_paint"])
            app_image.append(marks.get("image_shown", float("nan")))
        load_after = os.getloadavg()
    bare_s, app_s = float(np.median(bare)), float(np.median(app_paint))
    emit({
        "benchmark": "startup.first_paint",
        "device": cpu_device(),
        "runs": args.runs,
        "bare_qmainwindow_s": round(bare_s, 3),
        "app_demo_first_paint_s": round(app_s, 3),
        "app_demo_image_shown_s": round(float(np.median(app_image)), 3),
        "ratio_app_to_bare": round(app_s / bare_s, 2),
        "app_first_paint_max_s": round(float(np.max(app_paint)), 3),
        "target_s": 2.0,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
