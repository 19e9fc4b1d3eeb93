"""The main window as a user drives it: open, window/level, slices, status bar, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from lesion_studio.core.sample_data import sample_file


def _view_point(win, row: float, col: float) -> QPoint:
    """Viewport position of an image pixel centre."""
    scene = win.canvas.pixel_to_scene(row + 0.5, col + 0.5)
    return win.canvas.view.mapFromScene(scene)


def test_start_page_lists_demo_images(window) -> None:
    assert window.pages.currentWidget() is window.start_page
    names = [window.start_page.demo_list.item(i).text() for i in range(window.start_page.demo_list.count())]
    assert any("RG1_UNCR.dcm" in n for n in names)
    assert any("693_UNCR.dcm" in n for n in names)


def test_open_demo_radiograph_shows_it(window, qtbot, tmp_path: Path) -> None:
    with qtbot.waitSignal(window.loader.loaded, timeout=30_000):
        window.open_demo("RG1_UNCR.dcm")
    assert window.pages.currentWidget() is window.viewer_page
    image = window.state.image
    assert image.shape == (1955, 1841)
    assert "RG1_UNCR.dcm" in window.windowTitle()
    assert window.canvas.image_item.image.shape == (1955, 1841)
    assert "unknown" in window.info_panel.label.text()
    # It is remembered as recent, across a new window too.
    assert window.recent.entries()[0] == image.source.path.resolve()
    shot = tmp_path / "main_window.png"
    assert window.grab().save(str(shot))
    pixels = window.canvas.view.grab().toImage()
    assert pixels.width() > 100
    values = {pixels.pixelColor(x, y).value() for x in range(0, pixels.width(), 37) for y in range(0, pixels.height(), 37)}
    assert len(values) > 20  # a real picture, not a blank canvas


def test_window_level_fields_presets_and_reset(window, open_and_wait) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    state = window.state
    assert (state.window.center, state.window.width) == (40.0, 100.0)  # the file's own window
    window.window_panel.center_spin.setValue(-500.0)
    window.window_panel.width_spin.setValue(1200.0)
    assert (state.window.center, state.window.width) == (-500.0, 1200.0)
    assert window.canvas.image_item.levels == pytest.approx([-1100.0, 100.0])
    index = window.window_panel.preset_combo.findText("CT lung")
    window.window_panel.preset_combo.activated.emit(index)
    assert (state.window.center, state.window.width) == (-600.0, 1500.0)
    assert window.window_panel.center_spin.value() == -600.0
    window.reset_window_action.trigger()
    assert (state.window.center, state.window.width) == (40.0, 100.0)


def test_right_drag_changes_window(window, qtbot, open_and_wait) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    before = window.state.window
    viewport = window.canvas.view.viewport()
    start = _view_point(window, 256, 256)
    qtbot.mousePress(viewport, Qt.MouseButton.RightButton, pos=start)
    for step in range(1, 6):
        qtbot.mouseMove(viewport, start + QPoint(20 * step, 10 * step))
    qtbot.mouseRelease(viewport, Qt.MouseButton.RightButton, pos=start + QPoint(100, 50))
    after = window.state.window
    assert after.width > before.width  # dragged right: wider
    assert after.center > before.center  # dragged down: level up


def test_wheel_zooms_and_fit_and_one_to_one(window, qtbot, open_and_wait) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    window.fit_action.trigger()
    fitted = window.canvas.zoom_factor()
    window.canvas.zoom_at(2.0)
    assert window.canvas.zoom_factor() == pytest.approx(2 * fitted, rel=0.05)
    window.one_to_one_action.trigger()
    assert window.canvas.zoom_factor() == pytest.approx(1.0, rel=0.02)
    window.fit_action.trigger()
    assert window.canvas.zoom_factor() == pytest.approx(fitted, rel=0.02)


def test_status_bar_shows_pixel_mm_and_hounsfield_value(window, qtbot, open_and_wait) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    window.statusBar().clearMessage()
    row, col = 300, 200
    qtbot.mouseMove(window.canvas.view.viewport(), _view_point(window, row, col))
    qtbot.waitUntil(lambda: "HU" in window.value_label.text(), timeout=2000)
    expected = float(window.state.image.pixels[row, col])
    assert window.pixel_label.text() == f"x {col}  y {row} px"
    assert window.mm_label.text() == f"x {col * 0.478516:.1f}  y {row * 0.478516:.1f} mm"
    assert window.value_label.text() == f"value {expected:.6g} HU"


def test_status_bar_says_spacing_unknown_for_the_radiograph(window, qtbot, open_and_wait) -> None:
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))
    qtbot.mouseMove(window.canvas.view.viewport(), _view_point(window, 1000, 900))
    qtbot.waitUntil(lambda: window.mm_label.text() != "", timeout=2000)
    assert "unknown" in window.mm_label.text()


def test_page_through_a_volume(window, qtbot, open_and_wait) -> None:
    open_and_wait(window, sample_file("emri_small.dcm"))
    state = window.state
    assert state.image.n_slices == 10
    assert window.slice_navigator.isVisible()
    assert state.slice_index == 5
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert state.slice_index == 6
    assert window.slice_navigator.label.text() == "slice 7 / 10"
    np.testing.assert_array_equal(window.canvas.image_item.image, state.image.pixels[6])
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert state.slice_index == 4
    window.slice_navigator.slider.setValue(9)
    assert state.slice_index == 9
    qtbot.keyClick(window, Qt.Key.Key_PageDown)  # clamped at the last slice
    assert state.slice_index == 9


def test_ctrl_wheel_steps_slices(window, qtbot, open_and_wait) -> None:
    from PySide6.QtCore import QPoint as P
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    open_and_wait(window, sample_file("emri_small.dcm"))
    viewport = window.canvas.view.viewport()
    pos = QPointF(_view_point(window, 32, 32))
    event = QWheelEvent(
        pos, QPointF(viewport.mapToGlobal(pos.toPoint())), P(0, 0), P(0, 120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )
    QApplication.sendEvent(viewport, event)
    assert window.state.slice_index == 6


def test_bad_file_shows_an_error_and_keeps_the_window(window, open_and_wait) -> None:
    open_and_wait(window, sample_file("MR_truncated.dcm"))
    assert window.last_error is not None
    assert "MR_truncated.dcm" in window.last_error and "truncated" in window.last_error
    assert window.state.image is None
    assert window.pages.currentWidget() is window.start_page


def test_bad_file_keeps_the_open_image(window, open_and_wait, tmp_path: Path) -> None:
    open_and_wait(window, sample_file("693_UNCR.dcm"))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 300)
    open_and_wait(window, junk)
    assert "junk.dcm" in window.last_error
    assert window.state.image.source.path.name == "693_UNCR.dcm"


def _two_series(folder: Path) -> list[str]:
    base = pydicom.dcmread(sample_file("CT_small.dcm"))
    uids = [generate_uid(), generate_uid()]
    for s, uid in enumerate(uids):
        for k in range(3):
            ds = base.copy()
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = generate_uid()
            ds.SeriesDescription = f"series {s}"
            ds.ImagePositionPatient = [0, 0, float(k)]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.save_as(folder / f"s{s}_{k}.dcm")
    return uids


def test_folder_with_two_series_asks_and_opens_the_choice(window, qtbot, open_and_wait, tmp_path: Path) -> None:
    uids = _two_series(tmp_path)
    asked = []

    def choose(series):
        asked.append([s.series_uid for s in series])
        return uids[1]

    window.choose_series = choose
    window.open_path(tmp_path)
    qtbot.waitUntil(lambda: window.state.image is not None, timeout=30_000)
    assert sorted(asked[0]) == sorted(uids)
    assert window.state.image.source.series_uid == uids[1]
    assert window.state.image.n_slices == 3


def test_drop_a_file_opens_it(window, qtbot) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample_file("CT_small.dcm")))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.loader.loaded, timeout=30_000):
        window.dropEvent(event)
    assert window.state.image.source.path.name == "CT_small.dcm"


def test_recent_files_survive_a_new_window(window, qtbot, open_and_wait) -> None:
    from lesion_studio.app.main_window import MainWindow

    open_and_wait(window, sample_file("CT_small.dcm"))
    second = MainWindow()
    qtbot.addWidget(second)
    items = [second.start_page.recent_list.item(i).toolTip() for i in range(second.start_page.recent_list.count())]
    assert str(sample_file("CT_small.dcm").resolve()) in items
    recent_actions = [a.text() for a in second.recent_menu.actions()]
    assert str(sample_file("CT_small.dcm").resolve()) in recent_actions


def test_newest_load_wins(window, qtbot) -> None:
    window.loader.load(sample_file("RG1_J2KR.dcm"))  # slow
    with qtbot.waitSignal(window.loader.busyChanged, timeout=30_000, check_params_cb=lambda b: not b):
        window.open_path(sample_file("CT_small.dcm"))
    assert window.state.image.source.path.name == "CT_small.dcm"


def test_anisotropic_spacing_sets_the_displayed_aspect(window, qtbot) -> None:
    from lesion_studio.core.image import ImageSource, MedicalImage, Window

    pixels = np.zeros((100, 200), np.float32)
    image = MedicalImage(
        pixels=pixels, spacing_mm=(2.0, 0.5), modality="OT", window=Window(0, 1), window_source="preset",
        source=ImageSource(path=Path("aniso"), format="memory"),
    )
    window.state.set_image(image)
    window.show_viewer()
    rect = window.canvas.image_item.mapRectToParent(window.canvas.image_item.boundingRect())  # view coords
    assert rect.width() == pytest.approx(200.0)
    assert rect.height() == pytest.approx(100.0 * 2.0 / 0.5)  # 400 px tall: rows are 4× longer
    # And the cursor still maps back to true pixel indices.
    row, col = window.canvas.scene_to_pixel(window.canvas.pixel_to_scene(60.0, 150.0))
    assert (row, col) == pytest.approx((60.0, 150.0))


def test_wheel_zooms_at_the_cursor(window, qtbot, open_and_wait) -> None:
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    open_and_wait(window, sample_file("693_UNCR.dcm"))
    viewport = window.canvas.view.viewport()
    target = _view_point(window, 100, 400)
    before_zoom = window.canvas.zoom_factor()
    event = QWheelEvent(
        QPointF(target), QPointF(viewport.mapToGlobal(target)), QPoint(0, 0), QPoint(0, 240),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )
    QApplication.sendEvent(viewport, event)
    assert window.canvas.zoom_factor() > before_zoom * 1.1
    # The pixel under the cursor stays under the cursor.
    row, col = window.canvas.scene_to_pixel(window.canvas.view.mapToScene(target))
    assert (row, col) == pytest.approx((100.5, 400.5), abs=1.0)
