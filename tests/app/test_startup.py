"""Start-up stays light: the heavy scientific stack is imported when first needed, not at start.

(Timing itself lives in `benchmarks/startup.py`; these tests only check what gets imported.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "scipy", "skimage", "SimpleITK", "cv2")

STARTUP_SCRIPT = """
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from lesion_studio.core.device import cuda_impossible_without_torch, resolve_device
device = resolve_device("auto")  # what `lesion-studio` does first
after_device = sorted(m for m in HEAVY if m in sys.modules)
import lesion_studio.app.main_window
after_import = sorted(m for m in HEAVY if m in sys.modules)
from PySide6.QtWidgets import QApplication
app = QApplication([])
window = lesion_studio.app.main_window.MainWindow(device=device, offer_recovery=False)
window.show()
app.processEvents()
after_window = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps({"gpu_impossible": cuda_impossible_without_torch(), "device": device,
                  "after_device": after_device, "after_import": after_import, "after_window": after_window}))
window.close()
"""


def test_main_window_starts_without_torch_scipy_skimage_sitk_or_opencv(tmp_path: Path) -> None:
    env = dict(os.environ, LESION_STUDIO_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen")
    code = f"HEAVY = {HEAVY!r}\n" + STARTUP_SCRIPT
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    if seen["gpu_impossible"]:  # no CUDA driver / CPU-only torch: "auto" is decided without torch
        assert seen["device"] == "cpu"
        assert seen["after_device"] == [], seen
    assert seen["after_import"] == [] or seen["after_import"] == ["torch"] and not seen["gpu_impossible"], seen
    # the built-in shape gallery needs skimage/scipy/cv2 on construction; torch and SimpleITK never
    assert "SimpleITK" not in seen["after_window"], seen
    if seen["gpu_impossible"]:
        assert "torch" not in seen["after_window"], seen


def test_lazy_import_defers_until_first_attribute() -> None:
    code = (
        "import sys\n"
        "from lesion_studio.lazy import lazy_import\n"
        "sitk = lazy_import('SimpleITK')\n"
        "assert 'SimpleITK' not in sys.modules\n"
        "assert sitk.Image is sys.modules['SimpleITK'].Image\n"
        "assert lazy_import('SimpleITK') is sys.modules['SimpleITK']\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_startup_probe_reports_first_paint(tmp_path: Path) -> None:
    """`LESION_STUDIO_STARTUP_PROBE` (used by benchmarks/startup.py) prints the first paint, shows
    the demo radiograph, then quits by itself."""
    env = dict(os.environ, LESION_STUDIO_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen",
               LESION_STUDIO_STARTUP_PROBE="1")
    code = "import sys; from lesion_studio.app.cli import main; sys.exit(main(['--demo']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    marks = dict(line.split()[1].split("=") for line in result.stdout.splitlines() if line.startswith("STARTUP "))
    assert set(marks) == {"first_paint", "image_shown"}, result.stdout
    assert float(marks["first_paint"]) <= float(marks["image_shown"])
