"""Synthesis preview in the main window: place, preview off the UI thread, accept, undo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.image import ImageSource, MedicalImage, Window
from lesion_studio.core.model_catalog import builtin_models_dir
from lesion_studio.core.phantom import generate_phantom_dataset, make_phantom_case
from lesion_studio.core.sample_data import sample_file
from lesion_studio.models.trainer import train
from tests.models.conftest import tiny_config


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny texture (inpaint/remove) and outpaint checkpoints trained on phantom data."""
    root = tmp_path_factory.mktemp("synth_models")
    data = root / "phantom"
    generate_phantom_dataset(data, "chest", 8, size_px=128)
    out = {}
    for family in ("texture", "outpaint"):
        result = train(tiny_config(family, data, root / family, steps=8))
        out[family] = Path(result.checkpoint)
    return out


def _phantom_image(index: int = 1) -> tuple[MedicalImage, np.ndarray]:
    case = make_phantom_case("chest", index, size_px=256)
    assert case.lesion_mask.any()
    image = MedicalImage(
        pixels=case.image.astype(np.float32), spacing_mm=case.spacing_mm, modality="CR",
        window=Window.from_range(float(case.image.min()), float(case.image.max())), window_source="percentile",
        source=ImageSource(path=Path("phantom_case.png"), format="memory"),
    )
    return image, case.lesion_mask


def _click(qtbot, win, row: float, col: float) -> None:
    pos = win.canvas.view.mapFromScene(win.canvas.pixel_to_scene(row + 0.5, col + 0.5))
    qtbot.mouseClick(win.canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def _use_model(win, stem: Path) -> None:
    assert win.synthesis.add_checkpoint(stem)
    assert win.synthesis.model is not None and win.synthesis.model.stem == stem


def test_place_a_shape_at_a_diameter_in_mm_then_accept_and_undo(window, qtbot, open_and_wait, checkpoints) -> None:
    path = sample_file("693_UNCR.dcm")
    before_file = hashlib.sha256(path.read_bytes()).hexdigest()
    open_and_wait(window, path)
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_mode("inpaint")
    syn.set_size(10.0)
    assert window.synthesis_panel.unit_label.text() == "mm"
    window.tools.update(tool="place")
    original = window.state.image.pixels.copy()
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        _click(qtbot, window, 300, 200)
    preview = syn.preview
    result = preview.results[0]
    # Only the hole and its feathered seam change.
    from scipy import ndimage

    changed = window.canvas.image_item.image != original
    hole = result.plan.footprint_image()
    inside = ndimage.distance_transform_edt(~hole) <= result.plan.request.blending.feather_px
    assert changed.any() and not (changed & ~inside).any()
    np.testing.assert_array_equal(window.state.image.pixels, original)  # nothing applied yet

    label = syn.accept()
    assert label > 0
    doc = window.document
    mask = doc.labels == label
    spacing = window.state.image.plane_spacing_mm
    assert moment_diameter(mask, spacing) == pytest.approx(10.0, abs=max(spacing[0], 0.02 * 10.0))
    meta = doc.lesion_meta(label)
    assert meta.origin == "synthetic"
    assert len(meta.provenance["model_sha256"]) == 64
    assert meta.provenance["plan"]["request"]["diameter_mm"] == 10.0
    after = window.state.image.pixels.copy()
    assert not np.array_equal(after, original)
    window.annotations.flush()
    rows = [window.lesion_table.table.item(r, 2).text() for r in range(window.lesion_table.table.rowCount())]
    assert "synthetic" in rows

    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo step
    np.testing.assert_array_equal(window.state.image.pixels, original)
    assert not (doc.labels == label).any()
    np.testing.assert_array_equal(window.canvas.image_item.image, original)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(window.state.image.pixels, after)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before_file  # the source file is untouched


def test_radiograph_without_spacing_works_in_pixels_and_says_so(window, qtbot, open_and_wait, checkpoints) -> None:
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_size(18.0)
    assert window.synthesis_panel.unit_label.text() == "px"
    assert "no pixel spacing" in window.synthesis_panel.unit_note.text()
    window.tools.update(tool="place")
    qtbot.mouseMove(window.canvas.view.viewport(), window.canvas.view.mapFromScene(window.canvas.pixel_to_scene(900, 700)))
    qtbot.waitUntil(lambda: syn.outline.isVisible(), timeout=2000)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        _click(qtbot, window, 900, 700)
    label = syn.accept()
    mask = window.document.labels == label
    assert moment_diameter(mask) == pytest.approx(18.0, abs=1.0)


def test_before_after_toggle_split_view_and_reject(window, qtbot, open_and_wait, checkpoints) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_size(8.0)
    window.tools.update(tool="place")
    original = window.state.image.pixels.copy()
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        _click(qtbot, window, 250, 250)
    synthetic = syn.preview.results[0].image
    qtbot.keyClick(window, Qt.Key.Key_Space)
    np.testing.assert_array_equal(window.canvas.image_item.image, original)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    np.testing.assert_array_equal(window.canvas.image_item.image, synthetic)
    window.synthesis_panel.split_check.setChecked(True)
    shown = window.canvas.image_item.image
    split = syn.preview.results[0].box.col0 + syn.preview.results[0].box.width // 2
    np.testing.assert_array_equal(shown[:, split:], original[:, split:])
    np.testing.assert_array_equal(shown[:, :split], synthetic[:, :split])
    syn.reject()
    assert syn.preview is None
    np.testing.assert_array_equal(window.canvas.image_item.image, original)
    assert not window.document.lesion_ids


def test_variants_run_several_seeds_and_one_is_picked(window, qtbot, open_and_wait, checkpoints) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_size(8.0)
    window.tools.update(tool="place")
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        _click(qtbot, window, 250, 250)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        window.synthesis_panel.variants_spin.setValue(3)
        window.synthesis_panel.variants_button.click()
    assert len(syn.preview.results) == 3
    assert window.synthesis_panel.variant_list.count() == 3
    seeds = [r.plan.request.seed for r in syn.preview.results]
    assert len(set(seeds)) == 3
    # each variant also takes another built-in shape sample (issue 16: variants looked identical)
    footprints = {r.plan.footprint.tobytes() + bytes(str(r.plan.footprint.shape), "ascii") for r in syn.preview.results}
    assert len(footprints) == 3
    window.synthesis_panel.variant_list.setCurrentRow(2)
    np.testing.assert_array_equal(window.canvas.image_item.image, syn.preview.results[2].image)
    label = syn.accept()
    assert window.document.lesion_meta(label).provenance["plan"]["request"]["seed"] == seeds[2]


def test_remove_mode_fills_a_phantom_lesion(window, qtbot, checkpoints) -> None:
    image, lesion_mask = _phantom_image()
    window.state.set_image(image)
    window.show_viewer()
    qtbot.wait(20)
    window.canvas.fit()
    doc = window.document
    doc.paint_mask(lesion_mask, 1)
    syn = window.synthesis
    syn.set_mode("remove")
    syn.choose_model("auto-fill")  # the classical default for removal; no weights
    assert syn.model is not None and syn.model.classical
    window.tools.update(tool="place")
    rows, cols = np.nonzero(lesion_mask)
    from scipy import ndimage

    comp, _ = ndimage.label(lesion_mask)
    target = comp == comp[rows[0], cols[0]]
    r, c = np.argwhere(target).mean(axis=0)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        _click(qtbot, window, float(r), float(c))
    syn.accept()
    assert not doc.labels[target].any()  # the lesion is gone from the masks
    assert not np.array_equal(window.state.image.pixels[target], _phantom_image()[0].pixels[target])


def test_outpaint_keeps_the_lesion_pixels(window, qtbot, checkpoints) -> None:
    image, lesion_mask = _phantom_image()
    window.state.set_image(image)
    window.show_viewer()
    qtbot.wait(20)
    window.canvas.fit()
    window.document.paint_mask(lesion_mask, 1)
    syn = window.synthesis
    syn.set_mode("outpaint")
    _use_model(window, checkpoints["outpaint"])
    window.tools.update(tool="place")
    r, c = np.argwhere(lesion_mask)[0]
    original = image.pixels.copy()
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        _click(qtbot, window, float(r), float(c))
    result = syn.preview.results[0]
    np.testing.assert_array_equal(result.image[lesion_mask], original[lesion_mask])
    assert (result.image != original).any()


def test_model_that_does_not_fit_the_mode_says_so(window, qtbot, open_and_wait, checkpoints) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["outpaint"])
    syn.mode = "inpaint"
    syn.choose_model(str(checkpoints["outpaint"]))
    assert "not inpaint" in window.synthesis_panel.model_info.text()
    window.tools.update(tool="place")
    _click(qtbot, window, 200, 200)
    assert "cannot inpaint" in window.synthesis_panel.status_label.text()
    syn.model = None
    _click(qtbot, window, 200, 200)
    assert "No model" in window.synthesis_panel.status_label.text()


def test_newest_preview_wins(window, qtbot, open_and_wait, checkpoints) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_size(10.0)
    shown = []
    syn.previewShown.connect(lambda: shown.append(syn.preview.results[0].plan.request.centre_rc))
    syn.request_preview((100.0, 100.0))
    syn.request_preview((200.0, 300.0))
    syn.request_preview((400.0, 150.0))
    qtbot.waitUntil(lambda: bool(shown) and syn.worker.wait_idle(0.01), timeout=60_000)
    qtbot.wait(50)
    assert shown[-1] == (400.0, 150.0)
    assert (100.0, 100.0) not in shown


def test_export_current_image_with_provenance(window, qtbot, open_and_wait, checkpoints, tmp_path: Path) -> None:
    from lesion_studio.core.imageio import load_image

    open_and_wait(window, sample_file("693_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_size(8.0)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        syn.request_preview((250.0, 250.0))
    label = syn.accept()
    written = window.export_current_image(tmp_path / "synthetic.png")
    names = sorted(p.name for p in written)
    assert names == ["synthetic.mask.png", "synthetic.png", "synthetic.provenance.json"]
    provenance = json.loads((tmp_path / "synthetic.provenance.json").read_text())
    assert provenance["contains_synthetic"] is True
    lesion = next(item for item in provenance["lesions"] if item["id"] == label)
    assert lesion["origin"] == "synthetic" and "model_sha256" in lesion["synthesis"]
    stored = load_image(tmp_path / "synthetic.png").pixels
    value_map = provenance["png_value_map"]
    # 16-bit PNG: exact for whole numbers in range, else within half a quantization step.
    np.testing.assert_allclose(
        stored * value_map["slope"] + value_map["intercept"], window.state.image.pixels,
        rtol=0, atol=value_map["slope"] / 2 + 1e-3,
    )
    written = window.export_current_image(tmp_path / "synthetic.nii.gz")
    back = load_image(tmp_path / "synthetic.nii.gz")
    np.testing.assert_array_equal(back.pixels, window.state.image.pixels)
    assert back.spacing_mm == pytest.approx(window.state.image.spacing_mm)


FRESH_PROCESS_SCRIPT = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from lesion_studio.app.main_window import MainWindow
from lesion_studio.core.imageio import load_image
from lesion_studio.core.sample_data import sample_file
window = MainWindow(offer_recovery=False)
window.show()
assert "torch" not in sys.modules, "the main window must not import torch"
names = [m.name for m in window.synthesis.catalog]
assert {"real-nodule", "telea", "ct_nodule_inpaint", "ct_nodule_outpaint", "ct_nodule_shape"} <= set(names), names
assert window.synthesis.model is not None and window.synthesis.model.name == "real-nodule", window.synthesis.model
window.state.set_image(load_image(sample_file("693_UNCR.dcm")))
window.show_viewer()
window.synthesis.set_size(12.0)
window.confirm_discard_changes = lambda: True

def shown():
    label = window.synthesis.accept()
    print("ACCEPTED", label, flush=True)
    window.close()
    app.quit()

window.synthesis.previewShown.connect(shown)
QTimer.singleShot(50, lambda: window.synthesis.request_preview((250.0, 250.0)))
QTimer.singleShot(120_000, app.quit)
sys.exit(app.exec())
"""


def test_fresh_process_previews_with_the_default_model(tmp_path: Path) -> None:
    """A new app (torch not yet imported) previews with the default method without crashing."""
    import os
    import subprocess
    import sys

    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS_SCRIPT)
    env = dict(os.environ, LESION_STUDIO_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ACCEPTED" in result.stdout
    assert int(result.stdout.split("ACCEPTED")[1].split()[0]) > 0


def test_gui_accept_and_batch_export_give_identical_pixels(window, qtbot, open_and_wait, tmp_path: Path,
                                                           monkeypatch) -> None:
    """One synthesis path: the request the GUI accepted, replayed by the batch exporter (its own
    dataset reader, config, model loading and engine call), gives bit-identical pixels."""
    from types import SimpleNamespace

    from lesion_studio.core import augmentation_plan
    from lesion_studio.core.dataset import load_dataset
    from lesion_studio.core.export.config import load_batch_config
    from lesion_studio.core.synthesis_plan import SynthesisRequest
    from lesion_studio.models.batch_export import BatchExporter

    data = tmp_path / "ct"
    generate_phantom_dataset(data, "ct", 3, size_px=128)
    dataset = load_dataset(data)
    case = dataset.cases[0]
    from scipy import ndimage

    free = (dataset.read_location_map(case) > 0.5) & ~ndimage.binary_dilation(dataset.read_mask(case), iterations=4)
    depth = ndimage.distance_transform_edt(free)  # the lung point farthest from its edge and any lesion
    r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    centre = (float(r), float(c))
    open_and_wait(window, case.image_path)
    syn = window.synthesis
    config = tmp_path / "batch.toml"
    config.write_text(f'[input]\ndataset = "{data}"\n[synthesis]\nper_image = 1\n'
                      f'[models]\ninpaint = "real-nodule"\nremove = "auto-fill"\ndevice = "cpu"\n'
                      f'[output]\ndir = "{tmp_path / "out"}"\nformats = ["nifti"]\n')
    exporter = BatchExporter(load_batch_config(config))
    item = next(i for i in exporter.items if i.case.case_id == case.case_id and i.kind != "real")
    # the GUI's reader and the batch's dataset reader agree on the source pixels
    np.testing.assert_array_equal(exporter.case_inputs(item.case)["image"], window.state.image.pixels)
    lesion = np.zeros(case_shape := window.state.image.plane_shape, bool)
    for method, mode in (("real-nodule", "inpaint"), ("auto-fill", "remove")):
        syn.set_mode(mode)
        syn.choose_model(method)
        syn.set_size(6.0)
        syn.seed = 5
        before = window.state.image.pixels.copy()
        with qtbot.waitSignal(syn.previewShown, timeout=60_000):
            syn.request_preview(centre)
        result = syn.preview.results[0]
        syn.accept()
        gui_pixels = window.state.image.pixels.copy()
        assert not np.array_equal(gui_pixels, before)
        request = SynthesisRequest.from_dict(result.provenance["plan"]["request"])
        monkeypatch.setattr(augmentation_plan, "plan_augmentation",
                            lambda *a, **k: SimpleNamespace(steps=[SimpleNamespace(request=request)]))
        inputs = dict(exporter.case_inputs(item.case))
        inputs["image"], inputs["mask"] = before, lesion.copy()
        batch_pixels, batch_mask, records, _ = exporter.synthesize(item, inputs)
        np.testing.assert_array_equal(batch_pixels, gui_pixels)
        assert records[0]["family"] == method and records[0]["mode"] == mode
        if mode == "inpaint":
            lesion = window.document.plane(0) > 0
            np.testing.assert_array_equal(batch_mask, lesion)
            assert lesion.any() and lesion.sum() < 0.05 * lesion.size
        else:
            assert not batch_mask.any() and not (window.document.plane(0) > 0).any()
    assert case_shape == gui_pixels.shape


def test_real_nodule_shapes_feed_a_learned_model(window, qtbot, open_and_wait, checkpoints) -> None:
    """The shape picker's "Real nodule shapes (LIDC)" source: library outlines (projected for a
    radiograph), sampled off the UI thread, placed through a learned model as bank shapes."""
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))
    syn = window.synthesis
    _use_model(window, checkpoints["texture"])
    syn.set_mode("inpaint")
    syn.set_shape_source("real")
    qtbot.waitUntil(lambda: syn.real_bank is not None and len(syn.shapes.masks) > 0, timeout=60_000)
    assert len(syn.real_bank) == 300  # one outline per library nodule
    syn.set_size(18.0)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        syn.request_preview((900.0, 700.0))
    plan = syn.preview.results[0].plan
    assert plan.request.mask_source.kind == "bank" and plan.bank_index == syn.shapes.indices[syn.shapes.current]
    from scipy import ndimage

    assert ndimage.label(plan.footprint, structure=np.ones((3, 3)))[1] == 1


@pytest.mark.parametrize("shape_source", ["builtin", "real"])
def test_variants_with_the_default_method_differ_in_seed_shape_and_pixels(window, qtbot, open_and_wait,
                                                                           shape_source) -> None:
    """Issue 16 (6): four "variants" looked identical. With the default real-nodule method on the
    demo radiograph each variant has its own seed, its own library nodule and its own pixels,
    whether the shape picker shows built-in blobs or the real LIDC shapes (whose gallery used to
    pin one bank index for every variant)."""
    from lesion_studio.core.sample_data import DEMO_RADIOGRAPH

    open_and_wait(window, sample_file(DEMO_RADIOGRAPH))
    syn = window.synthesis
    assert syn.model is not None and syn.model.name == "real-nodule"
    if shape_source == "real":
        syn.set_shape_source("real")
        qtbot.waitUntil(lambda: syn.real_bank is not None and len(syn.shapes.masks) > 1, timeout=60_000)
    assert syn.shapes.source == shape_source
    window.tools.update(tool="place")
    h, w = window.state.image.plane_shape
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        syn.request_preview((h * 0.45, w * 0.3))
    first = syn.preview.results[0]
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        window.synthesis_panel.variants_spin.setValue(3)
        window.synthesis_panel.variants_button.click()
    results = syn.preview.results
    assert len(results) == 3
    assert len({r.plan.request.seed for r in results}) == 3
    assert len({r.plan.bank_index for r in results}) == 3, [r.plan.bank_index for r in results]
    footprints = [r.plan.footprint.tobytes() + bytes(str(r.plan.footprint.shape), "ascii") for r in results]
    assert len(set(footprints)) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(results[i].image, results[j].image), (i, j)
    # the first variant is the preview the user already saw
    np.testing.assert_array_equal(results[0].image, first.image)


def _choose(combo, data: str) -> None:
    """Pick a combo entry as the user does (its `activated` signal)."""
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_shape_picker_is_hidden_while_the_method_ignores_it(window, qtbot, open_and_wait) -> None:
    """The real-nodule method inserts a library nodule with its own outline (whatever thumbnail
    is picked) and remove/outpaint work on the clicked lesion: the panel then hides the shape
    source, gallery and buttons and says why; they come back with a method that places them."""
    open_and_wait(window, sample_file("CT_small.dcm"))
    panel, syn = window.synthesis_panel, window.synthesis
    picker = (panel.source_combo, panel.shape_grid, panel.reroll_button, panel.pin_button, panel.bank_button)
    _choose(panel.mode_combo, "inpaint")
    _choose(panel.model_combo, "real-nodule")
    assert not any(w.isVisibleTo(panel) for w in picker)
    assert panel.shapes_note.isVisibleTo(panel)
    assert "real library nodule" in panel.shapes_note.text() and "not used" in panel.shapes_note.text()
    fp = syn.current_footprint()  # the cursor outline shows the size only: a disc, not a picked blob
    assert fp is not None and np.array_equal(fp, fp.T) and np.array_equal(fp, fp[::-1])

    # the premise: two different picked shapes give the same real-nodule insertion
    syn.set_size(8.0)
    footprints = []
    for shape in (0, 3):
        syn.choose_shape(shape)
        with qtbot.waitSignal(syn.previewShown, timeout=60_000):
            syn.request_preview((64.0, 64.0))
        footprints.append(syn.preview.results[0].plan.footprint)
        syn.reject()
    np.testing.assert_array_equal(*footprints)

    learned = next(m for m in syn.catalog if m.serves("inpaint") and m.family == "texture" and not m.problem)
    _choose(panel.model_combo, str(learned.stem))
    assert all(w.isVisibleTo(panel) for w in picker) and not panel.shapes_note.isVisibleTo(panel)
    _choose(panel.mode_combo, "remove")
    assert not any(w.isVisibleTo(panel) for w in picker)
    assert panel.shapes_note.isVisibleTo(panel) and panel.shapes_note.text().startswith("Remove")


def test_context_box_on_a_small_patch_is_clipped_and_its_padding_drawn_apart(window, qtbot) -> None:
    """On a 64 × 64 CT patch the crop around a lesion near the corner leaves the image; the
    engine reflect-pads that part. The dashed box covers only the image pixels the method sees,
    the part past the edge is drawn apart (hatched), and both hide with the masks (H)."""
    pixels = np.full((64, 64), -800.0, np.float32)
    pixels[:, 40:] = 40.0
    image = MedicalImage(pixels=pixels, spacing_mm=(0.7, 0.7), modality="CT",
                         window=Window.from_range(-1000.0, 200.0), window_source="percentile",
                         source=ImageSource(path=Path("patch.png"), format="memory"))
    window.state.set_image(image)
    window.show_viewer()
    qtbot.wait(20)
    syn = window.synthesis
    syn.set_mode("inpaint")
    syn.choose_model("real-nodule")
    syn.set_size(6.0)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        syn.request_preview((12.0, 14.0))
    box = syn.preview.results[0].box
    assert box.row0 < 0 and box.col0 < 0  # the premise: the crop leaves the image
    rect = syn.crop_rect.rect()
    assert (rect.left(), rect.top()) == (0.0, 0.0)
    assert (rect.right(), rect.bottom()) == (box.col0 + box.width, box.row0 + box.height)
    assert syn.crop_rect.isVisible() and syn.crop_padding.isVisible()
    outside = syn.crop_padding.path().boundingRect()
    assert (outside.left(), outside.top()) == (box.col0, box.row0)
    assert not syn.crop_padding.path().contains(rect.center())  # the image part is not hatched
    window.tools.update(show_labels=False)
    assert not syn.crop_rect.isVisible() and not syn.crop_padding.isVisible()
    window.tools.update(show_labels=True)
    syn.reject()
    assert not syn.crop_padding.isVisible()

    with qtbot.waitSignal(syn.previewShown, timeout=60_000):  # a crop inside the image: no padding
        syn.request_preview((32.0, 20.0))
    box = syn.preview.results[0].box
    assert box.row0 >= 0 and box.col0 >= 0 and box.row0 + box.height <= 64 and box.col0 + box.width <= 64
    rect = syn.crop_rect.rect()
    assert (rect.left(), rect.top(), rect.width(), rect.height()) == (box.col0, box.row0, box.width, box.height)
    assert syn.crop_padding.path().isEmpty() and not syn.crop_padding.isVisible()


def test_real_stone_is_listed_and_previews_a_stone_on_a_kidney_slice(window, qtbot, open_and_wait) -> None:
    """The classical stone family, picked from code: the selector shows it, the shape picker
    stays (it takes the picked outline), and a click adds a hyperdense stone on a held-out
    kidney-stone CT slice (8-bit, no spacing: sizes in px)."""
    open_and_wait(window, Path(__file__).resolve().parents[1] / "data" / "kidney_stone_ks0057.png")
    syn, panel = window.synthesis, window.synthesis_panel
    syn.set_mode("inpaint")
    syn.choose_model("real-stone")
    assert panel.model_combo.currentData() == "real-stone"                 # the selector follows the controller
    syn.choose_model("no-such-model")
    assert syn.model is None and panel.model_combo.currentData() == ""     # "— no model —", not the stale entry
    syn.choose_model("real-stone")
    assert syn.shapes_used()
    syn.set_size(10.0)
    original = window.state.image.pixels.copy()
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        syn.request_preview((195.0, 120.0))                                  # the right kidney's sinus
    result = syn.preview.results[0]
    footprint = result.plan.footprint_image()
    assert result.provenance["model"]["family"] == "real-stone"
    assert (result.image - original)[footprint].max() >= 40                 # the stone rises above the tissue
    assert result.image.max() <= 255.0


def test_outpaint_default_follows_the_image_kind_and_a_user_choice_stays(window, qtbot, open_and_wait) -> None:
    """The bundled CT outpainter's card says default, CT only: the app picks it on CT and
    texture-fill on a radiograph, whichever order images and modes come in; a CT-only model
    chosen by hand leaves when a radiograph opens (its clicks would be refused); a method chosen
    by hand that runs everywhere stays."""
    syn = window.synthesis
    syn.set_mode("outpaint")
    open_and_wait(window, sample_file("693_UNCR.dcm"))                        # CT (HU)
    assert syn.model.name == "ct_nodule_outpaint" and syn.model.image_kinds == ("ct",)
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))                        # a radiograph
    assert syn.model.name == "texture-fill"
    assert window.synthesis_panel.model_combo.currentData() == str(syn.model.stem)
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    assert syn.model.name == "ct_nodule_outpaint"                            # the app's pick follows back
    syn.choose_model(str(builtin_models_dir() / "ct_nodule_outpaint"))       # now the user's choice
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))
    assert syn.model.name == "texture-fill"                                   # it cannot run there
    syn.choose_model("texture-fill")                                          # chosen by hand
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    assert syn.model.name == "texture-fill"                                   # stays: it runs on CT too
    syn.set_mode("inpaint")
    assert syn.model.name == "real-nodule"
