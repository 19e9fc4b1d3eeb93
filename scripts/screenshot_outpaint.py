"""Render outpainting in the app on a held-out LIDC CT slice, with the default outpaint method.

Opens one slice of `tests/data/lidc_heldout_axial.npz` (a series the bundled models never saw),
written to a temporary CT DICOM and opened like any file, switches to outpaint mode (the app
picks its default outpaint method), clicks the slice's real nodule, shoots the window, then
previews the other outpaint method on the same nodule. Writes

- `docs/screenshot_outpaint_ct.png`: the main window with the default method's preview;
- `docs/outpaint_before_after.png`: original / default method / the other method, per slice.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LESION_STUDIO_HOME", "/tmp/lesion-studio-screenshot")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot_synthesis_real import (  # noqa: E402
    CT_PATCHES, DOCS, LUNG, _grey, _open, _preview, _settle, _shoot, _write_ct_dicom, close, main_window,
)

METHODS = ("texture-fill", "ct_nodule_outpaint")


def _choose(app, window, name: str) -> None:
    """Pick a method in the panel's selector, as a user does."""
    combo = window.synthesis_panel.model_combo
    index = next((i for i in range(combo.count()) if str(combo.itemData(i)).endswith(name)), -1)
    assert index >= 0, f"{name} is not in the model selector"
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    _settle(app, 5)


def main() -> int:
    import cv2
    from lesion_studio.core.image import Window

    data = np.load(CT_PATCHES)
    app, window = main_window()
    rows = []
    lo, hi = LUNG[0] - LUNG[1] / 2, LUNG[0] + LUNG[1] / 2
    with tempfile.TemporaryDirectory() as folder:
        for index in range(len(data["images"])):
            path = Path(folder) / f"lidc_heldout_{index}.dcm"
            _write_ct_dicom(data["images"][index], tuple(data["spacing_mm"][index]), path)
            _open(app, window, path)
            window.state.set_window(Window(*LUNG))
            window.document.paint_mask(data["masks"][index] > 0, 1)  # the real nodule, as if painted
            syn = window.synthesis
            syn.set_mode("outpaint")
            if index == 0:
                default = syn.model.name  # what the app picks for outpaint mode (later slices keep the last choice)
            original = window.state.image.pixels.copy()
            rr, cc = np.nonzero(data["masks"][index])
            at = (float(rr.mean()), float(cc.mean()))
            outs = {}
            for name in (default, *[m for m in METHODS if m != default]):
                _choose(app, window, name)
                window.synthesis_panel.seed_spin.setValue(0)
                _preview(app, syn, at)
                outs[name] = syn.preview.results[0].image
                if index == 0 and name == default:
                    h, w = original.shape
                    print(_shoot(app, window, "screenshot_outpaint_ct.png", (0.0, 0.0, float(w), float(h))),
                          "default outpaint method", default)
                syn.reject()
            rows.append([_grey(original, lo, hi)] + [_grey(outs[n], lo, hi) for n in outs])
            print("slice", index, "methods", list(outs))
        close(app, window)
    size, gap = 300, 6
    lines = []
    for row in rows:
        tiles = [cv2.resize(t, (size, size), interpolation=cv2.INTER_NEAREST) for t in row]
        line = tiles[0]
        for tile in tiles[1:]:
            line = np.hstack([line, np.full((size, gap), 255, np.uint8), tile])
        lines.append(line)
    sheet = lines[0]
    for line in lines[1:]:
        sheet = np.vstack([sheet, np.full((gap, line.shape[1]), 255, np.uint8), line])
    cv2.imwrite(str(DOCS / "outpaint_before_after.png"), sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
