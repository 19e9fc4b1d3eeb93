"""Painting in the main window as a user does it: strokes, fill, lasso, undo, keys, files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from lesion_studio.core.sample_data import sample_file


@pytest.fixture
def ct_window(window, open_and_wait):
    """The main window showing CT_small (128×128, 0.661 mm pixels)."""
    open_and_wait(window, sample_file("CT_small.dcm"))
    window.canvas.fit()
    return window


def _pos(win, row: float, col: float) -> QPoint:
    """Viewport position of the centre of pixel (row, col)."""
    return win.canvas.view.mapFromScene(win.canvas.pixel_to_scene(row + 0.5, col + 0.5))


def _drag(qtbot, win, points: list[tuple[float, float]], modifier=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = win.canvas.view.viewport()
    # Two quick presses would make Qt report a double-click; a person starts a new stroke later.
    qtbot.wait(QApplication.styleHints().mouseDoubleClickInterval() + 30)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, modifier, _pos(win, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(viewport, _pos(win, *p))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifier, _pos(win, *points[-1]))
    win.annotations.flush()


def _distance_to_segment(shape, p0, p1) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    (r0, c0), (r1, c1) = p0, p1
    d = np.array([r1 - r0, c1 - c0])
    t = np.clip(((rows - r0) * d[0] + (cols - c0) * d[1]) / max(d @ d, 1e-12), 0, 1)
    return np.hypot(rows - (r0 + t * d[0]), cols - (c0 + t * d[1]))


def test_brush_drag_paints_the_swept_pixels(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=3.0, radius_unit="px")
    points = [(40.0, 30.0 + 5 * k) for k in range(13)]  # a fast horizontal stroke, 5 px steps
    _drag(qtbot, win, points)
    labels = win.document.labels
    distance = _distance_to_segment(labels.shape, points[0], points[-1])
    assert np.all(labels[distance <= 2.9] == 1)
    assert np.all(labels[distance >= 3.1] == 0)
    assert win.document.history.can_undo and win.document.lesion_ids == (1,)
    assert win.lesion_table.table.rowCount() == 1
    # The overlay shows the lesion in the class colour.
    rgba = win.annotations.overlay.labels_item.image
    assert rgba[40, 60, 3] > 0 and rgba[80, 60, 3] == 0


def test_brush_in_mm_honours_spacing_and_the_outline_shows_its_size(ct_window, qtbot) -> None:
    win = ct_window
    spacing = win.state.image.plane_spacing_mm[0]
    win.tools.update(tool="brush", radius=4.0, radius_unit="mm")
    qtbot.mouseMove(win.canvas.view.viewport(), _pos(win, 64, 64))
    qtbot.waitUntil(lambda: win.canvas.brush_outline.isVisible(), timeout=2000)
    rect = win.canvas.brush_outline.rect()
    assert rect.width() == pytest.approx(2 * (4.0 / spacing + 0.5), rel=1e-3)
    _drag(qtbot, win, [(64.0, 64.0), (64.0, 64.5)])
    record = win.document.lesion_table()[0]
    assert record.equivalent_diameter_mm == pytest.approx(8.0, rel=0.1)


def test_second_stroke_on_a_lesion_extends_it_and_shift_continues_the_selection(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=2.0)
    _drag(qtbot, win, [(20.0, 20.0), (20.0, 30.0)])
    _drag(qtbot, win, [(20.0, 30.0), (30.0, 30.0)])  # starts on lesion 1: extends it
    assert win.document.lesion_ids == (1,)
    _drag(qtbot, win, [(80.0, 80.0), (80.0, 90.0)])  # on background: a new lesion
    assert win.document.lesion_ids == (1, 2)
    win.document.selected_id = 1
    _drag(qtbot, win, [(100.0, 20.0), (100.0, 30.0)], Qt.KeyboardModifier.ShiftModifier)
    assert win.document.lesion_ids == (1, 2)
    assert win.document.labels[100, 25] == 1


def test_eraser_removes_pixels(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=4.0)
    _drag(qtbot, win, [(50.0, 20.0), (50.0, 100.0)])
    win.tools.update(tool="eraser", radius=6.0)
    _drag(qtbot, win, [(50.0, 50.0), (50.0, 70.0)])
    labels = win.document.labels
    assert labels[50, 60] == 0 and labels[50, 25] == 1 and labels[50, 95] == 1


def test_lasso_fills_the_outline_and_fill_closes_a_hole(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="lasso")
    corners = [(30.0, 30.0), (30.0, 90.0), (90.0, 90.0), (90.0, 30.0)]
    path = []
    for a, b in zip(corners, corners[1:] + corners[:1]):
        path += [(a[0] + (b[0] - a[0]) * t / 6, a[1] + (b[1] - a[1]) * t / 6) for t in range(6)]
    _drag(qtbot, win, path + [corners[0]])
    labels = win.document.labels
    assert labels[60, 60] == 1 and labels[31, 31] == 1 and labels[20, 20] == 0 and labels[95, 60] == 0
    area = int((labels == 1).sum())
    assert abs(area - 61 * 61) <= 2 * 61 * 2  # the square, within its boundary pixels
    # Punch a hole, then click inside it with the fill tool: the selected lesion closes it.
    win.document.fill_polygon([(50, 50), (50, 70), (70, 70), (70, 50)], 0)
    assert labels[60, 60] == 0
    win.tools.update(tool="fill")
    qtbot.mouseClick(win.canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=_pos(win, 60, 60))
    assert labels[60, 60] == 1
    assert int((labels == 1).sum()) == area


def test_undo_and_redo_restore_exact_arrays(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=3.0)
    states = [win.document.labels.copy()]
    for row in (20.0, 50.0, 80.0):
        _drag(qtbot, win, [(row, 20.0), (row + 10, 100.0)])
        states.append(win.document.labels.copy())
    for expected in reversed(states[:-1]):
        qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        np.testing.assert_array_equal(win.document.labels, expected)
    for expected in states[1:]:
        qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        np.testing.assert_array_equal(win.document.labels, expected)


def test_tool_shortcuts(ct_window, qtbot) -> None:
    win = ct_window
    win.canvas.view.setFocus()
    for key, tool in ((Qt.Key.Key_B, "brush"), (Qt.Key.Key_E, "eraser"), (Qt.Key.Key_F, "fill"),
                      (Qt.Key.Key_L, "lasso"), (Qt.Key.Key_S, "select"), (Qt.Key.Key_Escape, "navigate")):
        qtbot.keyClick(win, key)
        assert win.tools.settings.tool == tool
        assert win.annotation_panel.tool_buttons[tool].isChecked()
    radius = win.tools.settings.radius
    qtbot.keyClick(win, Qt.Key.Key_BracketRight)
    assert win.tools.settings.radius > radius
    qtbot.keyClick(win, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(win, Qt.Key.Key_BracketLeft)
    assert win.tools.settings.radius < radius
    qtbot.keyClick(win, Qt.Key.Key_2)
    assert win.document.current_class == win.document.classes[1].name
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert not win.annotations.overlay.labels_item.isVisible()
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert win.annotations.overlay.labels_item.isVisible()
    win.show_shortcuts()
    keys = [win.shortcuts_dialog.table.item(r, 0).text() for r in range(win.shortcuts_dialog.table.rowCount())]
    assert "Ctrl+Z" in keys and "B" in keys and "[  /  ]" in keys
    win.shortcuts_dialog.close()


def test_select_relabel_and_delete_a_lesion(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=3.0)
    _drag(qtbot, win, [(30.0, 30.0), (30.0, 40.0)])
    _drag(qtbot, win, [(90.0, 90.0), (90.0, 100.0)])
    win.tools.update(tool="select")
    qtbot.mouseClick(win.canvas.view.viewport(), Qt.MouseButton.LeftButton, pos=_pos(win, 30, 35))
    assert win.document.selected_id == 1
    win.annotations.set_current_class("stone")
    win.lesion_table.relabel_button.click()
    assert win.document.lesion_meta(1).class_name == "stone"
    qtbot.keyClick(win, Qt.Key.Key_Delete)
    assert win.document.lesion_ids == (2,)
    win.annotations.flush()
    assert win.lesion_table.table.rowCount() == 1


def test_location_map_is_a_separate_layer(ct_window, qtbot) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=5.0, target_layer="location")
    _drag(qtbot, win, [(60.0, 20.0), (60.0, 100.0)])
    assert win.document.location[60, 60] == 1
    assert not win.document.labels.any()
    assert win.annotations.overlay.location_item.image[60, 60, 3] > 0


def test_session_round_trip_restores_masks_window_and_slice(window, qtbot, open_and_wait, tmp_path: Path) -> None:
    from lesion_studio.app.main_window import MainWindow

    open_and_wait(window, sample_file("emri_small.dcm"))
    window.tools.update(tool="brush", radius=3.0)
    window.state.set_slice(7)
    _drag(qtbot, window, [(20.0, 20.0), (30.0, 40.0)])
    window.tools.update(target_layer="location")
    _drag(qtbot, window, [(50.0, 10.0), (50.0, 50.0)])
    window.window_panel.center_spin.setValue(123.0)
    saved = window.save_session(tmp_path / "case.json")
    assert saved is not None and not window.has_unsaved_changes()
    labels, location = window.document.labels.copy(), window.document.location.copy()

    other = MainWindow(offer_recovery=False)
    qtbot.addWidget(other)
    with qtbot.waitSignal(other.loader.loaded, timeout=30_000):
        other.open_session(saved)
    np.testing.assert_array_equal(other.document.labels, labels)
    np.testing.assert_array_equal(other.document.location, location)
    assert other.state.slice_index == 7
    assert other.state.window.center == 123.0


def test_mask_export_and_import_and_a_size_mismatch(ct_window, qtbot, tmp_path: Path) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=3.0)
    _drag(qtbot, win, [(40.0, 40.0), (40.0, 60.0)])
    png = win.save_mask(tmp_path / "mask.png")
    nii = win.save_mask(tmp_path / "mask.nii.gz")
    assert png is not None and nii is not None
    expected = win.document.labels.copy()
    win.document.delete_lesion(1)
    assert win.import_mask(png)
    np.testing.assert_array_equal(win.document.labels > 0, expected > 0)
    wrong = tmp_path / "wrong.png"
    cv2.imwrite(str(wrong), np.zeros((64, 32), np.uint8))
    assert not win.import_mask(wrong)
    assert "wrong.png" in win.last_error and "64" in win.last_error and "128" in win.last_error


def test_painted_lesion_screenshot(ct_window, qtbot, tmp_path: Path) -> None:
    win = ct_window
    win.tools.update(tool="brush", radius=6.0)
    _drag(qtbot, win, [(60.0, 50.0), (66.0, 58.0), (70.0, 70.0)])
    path = tmp_path / "painted.png"
    assert win.grab().save(str(path))
    shot = cv2.imread(str(path))
    # The nodule class colour (255, 200, 0) blended over the image appears in the canvas.
    b, g, r = shot[..., 0].astype(int), shot[..., 1].astype(int), shot[..., 2].astype(int)
    assert np.count_nonzero((r - b > 60) & (g - b > 40)) > 50


RECOVERY_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from lesion_studio.app.main_window import MainWindow
    w = MainWindow(offer_recovery=False)
    w.open_path(sys.argv[1]); w.loader.wait()
    for _ in range(50):
        app.processEvents()
    doc = w.document
    doc.paint_segment((20, 20), (20, 60), doc.next_lesion_id(), radius_px=4)
    doc.paint_segment((90, 30), (100, 90), doc.next_lesion_id(), radius_px=3)
    assert w.autosave_now(wait=True)
    print("SAVED", flush=True)
    doc.paint_segment((60, 60), (61, 61), doc.next_lesion_id(), radius_px=8)  # after the autosave
    time.sleep(60)
    """
)


def test_autosave_recovers_after_the_app_is_killed(window, qtbot, tmp_path: Path) -> None:
    from lesion_studio.app.main_window import MainWindow

    script = tmp_path / "crashy.py"
    script.write_text(RECOVERY_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(sample_file("CT_small.dcm"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "SAVED", proc.stderr.read()
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    restarted = MainWindow(offer_recovery=False)
    qtbot.addWidget(restarted)
    offered = []
    restarted.ask_recover = lambda recovery: offered.append(recovery) or True
    with qtbot.waitSignal(restarted.loader.loaded, timeout=30_000):
        restarted.offer_recovery()
    assert len(offered) == 1 and offered[0].n_lesions == 2
    labels = restarted.document.labels
    assert set(np.unique(labels)) == {0, 1, 2}  # the stroke after the autosave is not there
    assert labels[20, 40] == 1 and labels[95, 60] == 2
    assert restarted.has_unsaved_changes()
    assert restarted.autosave.find_recoveries() == []
