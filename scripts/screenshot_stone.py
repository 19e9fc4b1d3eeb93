"""Render the `real-stone` family in the app on a held-out kidney-stone CT slice.

Opens `tests/data/kidney_stone_ks0057.png` (a coronal CT slice of a held-out session, 8-bit,
no spacing, so sizes are px) like any file, picks `real-stone` in inpaint mode, previews a
10 px stone in the right kidney's sinus (the other kidney holds the slice's two real stones),
shoots the window zoomed on both kidneys, accepts, and writes

- `docs/screenshot_synthesis_stone.png`: the main window with the preview;
- `docs/synthesis_stone_before_after.png`: before / after crops around the insertion.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LESION_STUDIO_HOME", "/tmp/lesion-studio-screenshot")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot_synthesis_real import (  # noqa: E402
    DOCS, ROOT, _grey, _open, _preview, _settle, _sheet, _shoot, close, main_window,
)

STONE_SLICE = ROOT / "tests" / "data" / "kidney_stone_ks0057.png"
INSERT_AT = (195.0, 120.0)  # the right kidney's sinus (row, col)
DIAMETER_PX = 10.0
VIEW = (40.0, 120.0, 290.0, 140.0)  # x, y, width, height: both kidneys


def main() -> int:
    import cv2

    app, window = main_window()
    _open(app, window, STONE_SLICE)
    original = window.state.image.pixels.copy()
    syn = window.synthesis
    syn.set_mode("inpaint")
    combo = window.synthesis_panel.model_combo  # picked in the panel, as a user does
    index = combo.findData("real-stone")
    assert index >= 0, "real-stone is not in the model selector"
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    _settle(app, 5)
    syn.set_size(DIAMETER_PX)
    window.synthesis_panel.seed_spin.setValue(0)
    _preview(app, syn, INSERT_AT)
    out = _shoot(app, window, "screenshot_synthesis_stone.png", VIEW)
    print(out, "model", syn.model.name, "inserted lesion", syn.accept())
    after = window.state.image.pixels
    r, c, half = int(INSERT_AT[0]), int(INSERT_AT[1]), 24
    pair = [_grey(img[r - half:r + half, c - half:c + half], 0.0, 255.0) for img in (original, after)]
    added = float((after - original).max())
    print("largest added value", added, "at", np.unravel_index(np.argmax(after - original), after.shape))
    assert added > 20, "the accepted stone did not change the image"
    cv2.imwrite(str(DOCS / "synthesis_stone_before_after.png"), _sheet([pair], size=320))
    close(app, window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
