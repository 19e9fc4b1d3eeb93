"""Render the experiment dashboard of finished experiments to PNG (offscreen), for docs/.

    python scripts/screenshot_acceptance_dashboard.py runs/acceptance/node21_seg/results.json \
        runs/acceptance/kidney_stones_det/results.json [--out docs] [--metric region_f1]

Writes `<out>/screenshot_acceptance_<folder name>.png` per results file, the dashboard at
1280 × 860 as the GUI shows it after opening the file (Jobs ▸ open results).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files (or their folders)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--metric", default="", help="metric shown in the CD / summary box (default: the dashboard's)")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from lesion_studio.widgets.experiment_dashboard import open_experiment_dashboard

    app = QApplication.instance() or QApplication([])
    for path in args.results:
        dash = open_experiment_dashboard(path)
        dash.resize(1280, 860)
        dash.show()
        if args.metric:
            dash.metric_box.setCurrentText(args.metric)
        for _ in range(20):  # let layouts and plots settle (sleep: a busy loop crashes PySide6)
            app.processEvents()
            time.sleep(0.02)
        folder = path.parent if path.suffix == ".json" else path
        out = dash.export_png(args.out / f"screenshot_acceptance_{folder.name}.png")
        print(out)
        dash.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
