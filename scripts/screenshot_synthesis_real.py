"""Render default-method synthesis on the demo radiograph (RG1_UNCR.dcm) and on a real CT slice.

Writes
- `docs/screenshot_synthesis_real.png`: the main window on RG1, zoomed on a `real-nodule`
  insertion (the app's default inpaint method) at 110 px, its preview outline shown, after one
  of RG1's own nodular opacities was removed with `auto-fill` (outlined here with a painted disc);
- `docs/screenshot_synthesis_ct.png`: the main window on one held-out LIDC-IDRI CT slice
  (`tests/data/lidc_heldout_axial.npz`, 50 x 50 px at 1 mm, its patient never in the nodule
  library), written to a temporary CT DICOM and opened like any file, lung window, with a
  default-method insertion of 10 mm previewed in lung parenchyma beside the slice's own nodule;
- `docs/synthesis_real_before_after.png`: before / after crops of all three (rows: RG1
  insertion, RG1 removal, CT insertion), for the README and for looking at the pixels.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LESION_STUDIO_HOME", "/tmp/lesion-studio-screenshot")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INSERT_AT = (1010.0, 1280.0)  # lung field between two metastases (row, col)
INSERT_DIAMETER_PX = 110.0  # about 21 mm at RG1's ~0.19 mm/px
INSERT_VIEW = (500.0, 320.0)  # width, height of the radiograph view around the insertion (px)
OPACITY_AT = (862.0, 1462.0)  # one of RG1's real nodular opacities
OPACITY_RADIUS_PX = 86  # the opacity and its blurred rim, as a reader would outline it

CT_PATCHES = ROOT / "tests" / "data" / "lidc_heldout_axial.npz"
CT_INDEX = 2  # the patch whose own solid nodule (centre, ~6 mm) shows clearly in a lung window
CT_INSERT_AT = (38.0, 37.0)  # lung parenchyma 17 mm below-right of the patch's nodule, no vessel
CT_DIAMETER_MM = 10.0  # the panel's default diameter
LUNG = (-600.0, 1500.0)  # window level, width (HU)
SIDE_PANEL_PX = 440  # the side panel at its widest, so the Synthesize panel is not cut off


def _wait(app, flag: list) -> None:
    """Run the event loop until the preview arrives (a busy processEvents() loop crashes
    PySide6 6.x with 'none_dealloc' after some ten thousand turns)."""
    import time

    while not flag:
        app.processEvents()
        time.sleep(0.01)


def _settle(app, turns: int = 30) -> None:
    import time

    for _ in range(turns):
        app.processEvents()
        time.sleep(0.01)


def _grey(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((pixels - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _open(app, window, path: Path) -> None:
    """Open a file through the app's normal path (File ▸ Open), dropping the previous work."""
    window.ask_unsaved_changes = lambda: "discard"
    window.open_path(path)
    window.loader.wait()
    _settle(app)
    window.viewer_page.setSizes([window.width() - SIDE_PANEL_PX, SIDE_PANEL_PX])
    window.side_tabs.setCurrentIndex(window.panel_tabs["synthesize"])
    _settle(app, 5)


def _preview(app, syn, at: tuple[float, float]) -> None:
    done: list = []

    def arrived() -> None:
        done.append(True)

    syn.previewShown.connect(arrived)
    syn.request_preview(at)
    _wait(app, done)
    syn.previewShown.disconnect(arrived)


def _default_insert(syn) -> str:
    """Inpaint mode with the method the app picks for it (the first inpaint entry)."""
    syn.set_mode("inpaint")
    family = syn.model.family
    assert family == "real-nodule", f"the default inpaint method is now {family}: update the README"
    return family


def _shoot(app, window, name: str, rect: tuple[float, float, float, float]) -> Path:
    from PySide6.QtCore import QRectF

    window.tools.update(tool="navigate")
    window.canvas.view_box.setRange(rect=QRectF(*rect), padding=0.0)
    _settle(app, 10)
    window.statusBar().clearMessage()
    out = DOCS / name
    window.grab().save(str(out))
    return out


def _radiograph(app, window) -> list[np.ndarray]:
    """Remove one opacity, preview a default insertion, shoot, accept; before/after pairs."""
    from lesion_studio.core.sample_data import sample_file

    _open(app, window, sample_file("RG1_UNCR.dcm"))
    window.state.apply_preset("Auto (1–99 %)")
    original = window.state.image.pixels.copy()
    syn, doc = window.synthesis, window.document

    rows, cols = np.ogrid[: original.shape[0], : original.shape[1]]
    opacity = (rows - OPACITY_AT[0]) ** 2 + (cols - OPACITY_AT[1]) ** 2 <= OPACITY_RADIUS_PX**2
    doc.paint_mask(opacity, doc.next_lesion_id())
    syn.set_mode("remove")
    syn.choose_model("auto-fill")
    _preview(app, syn, OPACITY_AT)
    syn.accept()

    _default_insert(syn)
    syn.set_size(INSERT_DIAMETER_PX)
    window.synthesis_panel.seed_spin.setValue(4)  # as typed in the panel, so it shows
    _preview(app, syn, INSERT_AT)
    w, h = INSERT_VIEW
    out = _shoot(app, window, "screenshot_synthesis_real.png", (INSERT_AT[1] - w / 2, INSERT_AT[0] - h / 2, w, h))
    print(out, "model", syn.model.name, "inserted lesion", syn.accept())

    after = window.state.image.pixels
    lo, hi = np.percentile(original, [1, 99])
    tiles = []
    for (r, c), half in ((INSERT_AT, 90), (OPACITY_AT, 120)):
        r0, c0 = int(r) - half, int(c) - half
        tiles.append([_grey(img[r0 : r0 + 2 * half, c0 : c0 + 2 * half], lo, hi) for img in (original, after)])
    return tiles


def _write_ct_dicom(pixels: np.ndarray, spacing_mm: tuple[float, float], path: Path) -> None:
    """One axial CT slice in HU as a minimal DICOM file (modality and pixel spacing kept)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "LIDC-IDRI held-out patch"
    ds.SeriesDescription = "held-out LIDC-IDRI axial patch, 1 mm"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [float(spacing_mm[0]), float(spacing_mm[1])]
    ds.SliceThickness = 1.0
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _ct(app, window, folder: Path) -> list[np.ndarray]:
    """Open a held-out LIDC slice, lung window, preview a default insertion, shoot, accept."""
    from lesion_studio.core.image import Window

    data = np.load(CT_PATCHES)
    path = folder / "lidc_heldout_ct.dcm"
    _write_ct_dicom(data["images"][CT_INDEX], tuple(data["spacing_mm"][CT_INDEX]), path)
    _open(app, window, path)
    image = window.state.image
    assert image.modality == "CT" and image.plane_spacing_mm == (1.0, 1.0), (image.modality, image.spacing_mm)
    window.state.set_window(Window(*LUNG))
    original = image.pixels.copy()
    syn = window.synthesis
    _default_insert(syn)
    syn.set_size(CT_DIAMETER_MM)
    window.synthesis_panel.seed_spin.setValue(0)
    _preview(app, syn, CT_INSERT_AT)
    h, w = original.shape
    out = _shoot(app, window, "screenshot_synthesis_ct.png", (0.0, 0.0, float(w), float(h)))
    print(out, "model", syn.model.name, "inserted lesion", syn.accept())
    lo, hi = LUNG[0] - LUNG[1] / 2, LUNG[0] + LUNG[1] / 2
    return [_grey(img, lo, hi) for img in (original, window.state.image.pixels)]


def _sheet(pairs: list[list[np.ndarray]], size: int = 360, gap: int = 6) -> np.ndarray:
    import cv2

    rows = []
    for before, after in pairs:
        # Nearest-neighbour for small CT patches (each 1 mm pixel stays a square), area otherwise.
        interp = cv2.INTER_NEAREST if before.shape[0] < size / 2 else cv2.INTER_AREA
        a, b = (cv2.resize(t, (size, size), interpolation=interp) for t in (before, after))
        rows.append(np.hstack([a, np.full((size, gap), 255, np.uint8), b]))
    out = [rows[0]]
    for row in rows[1:]:
        out += [np.full((gap, row.shape[1]), 255, np.uint8), row]
    return np.vstack(out)


def main_window():
    """`(app, window)`: the main window, dark theme, 1500 x 950, shown (offscreen)."""
    from PySide6.QtWidgets import QApplication

    from lesion_studio.app.main_window import MainWindow
    from lesion_studio.widgets.theme import apply_dark_theme

    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    window = MainWindow(offer_recovery=False)
    window.resize(1500, 950)
    window.show()
    return app, window


def close(app, window) -> None:
    """Close the window, dropping the work (no "discard unsaved changes?" dialog offscreen)."""
    window.ask_unsaved_changes = lambda: "discard"
    window.close()
    app.processEvents()


def main() -> int:
    import cv2

    app, window = main_window()
    with tempfile.TemporaryDirectory() as folder:
        pairs = _radiograph(app, window)
        pairs.append(_ct(app, window, Path(folder)))
        close(app, window)
    cv2.imwrite(str(DOCS / "synthesis_real_before_after.png"), _sheet(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
