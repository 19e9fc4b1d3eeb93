"""Issue 16: readable menus and no silent loss of annotations."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu


def _menu_actions(menu: QMenu) -> list[QAction]:
    """Every action of a menu and its submenus."""
    found: list[QAction] = []
    for action in menu.actions():
        found.append(action)
        if action.menu() is not None:
            found += _menu_actions(action.menu())
    return found


def test_every_menu_entry_has_text(window) -> None:
    actions = [a for top in window.menuBar().actions() for a in [top, *_menu_actions(top.menu())]]
    assert len(actions) > 40
    blank = [a.shortcut().toString() or repr(a) for a in actions if not a.isSeparator() and not a.text().strip()]
    assert blank == []


# ---------------------------------------------------------------- unsaved work

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from pathlib import Path  # noqa: E402

from lesion_studio.app.main_window import MainWindow  # noqa: E402
from lesion_studio.core.annotation.session import load_session  # noqa: E402
from lesion_studio.core.sample_data import sample_file  # noqa: E402

_REAL_CONFIRM = MainWindow.confirm_discard_changes  # conftest replaces it with "always discard"


def _paint_lesion(win: MainWindow) -> int:
    """One drawn lesion, committed as the brush would."""
    doc = win.document
    mask = np.zeros(doc.plane_shape, bool)
    mask[40:50, 40:50] = True
    with doc.transaction("test lesion"):
        label = doc.new_lesion()
        doc.paint_mask(mask, label)
    return label


@pytest.fixture
def asking(window, monkeypatch, open_and_wait) -> dict:
    """The CT demo open with one unsaved lesion; the prompt's answer is scripted."""
    monkeypatch.setattr(MainWindow, "confirm_discard_changes", _REAL_CONFIRM)
    script = {"answer": "cancel", "asked": 0, "path": ""}

    def ask(_self) -> str:
        script["asked"] += 1
        return script["answer"]

    monkeypatch.setattr(MainWindow, "ask_unsaved_changes", ask)
    monkeypatch.setattr(MainWindow, "ask_session_path", lambda _self: script["path"])
    open_and_wait(window, sample_file("CT_small.dcm"))
    _paint_lesion(window)
    assert window.has_unsaved_changes()
    return script


@pytest.mark.parametrize("opener", ["path", "demo"])
def test_opening_another_image_with_unsaved_lesions_can_be_cancelled(window, qtbot, asking, opener) -> None:
    doc = window.document
    if opener == "demo":
        window.open_demo("RG1_UNCR.dcm")
    else:
        window.open_path(sample_file("RG1_UNCR.dcm"))
    qtbot.wait(50)
    assert asking["asked"] == 1
    assert not window.loader.busy
    assert window.document is doc and len(doc.lesion_ids) == 1
    asking["answer"] = "discard"  # let the window close


def test_save_in_the_prompt_writes_the_session_then_opens(window, qtbot, asking, tmp_path: Path) -> None:
    asking["answer"], asking["path"] = "save", str(tmp_path / "work")
    with qtbot.waitSignal(window.loader.loaded, timeout=30_000):
        window.open_demo("RG1_UNCR.dcm")
    assert asking["asked"] == 1
    doc, session = load_session(tmp_path / "work.json")
    assert len(doc.lesion_ids) == 1 and session.image_path.endswith("CT_small.dcm")
    assert window.state.image.shape == (1955, 1841) and window.document.lesion_ids == ()


def test_accepted_synthesis_counts_as_unsaved_work(window, qtbot, asking) -> None:
    """An accepted synthesis changes only the working image (outpaint, remove): still unsaved."""
    doc = window.document
    with doc.transaction("test lesion"):
        doc.delete_lesion(doc.lesion_ids[0])
    window._mark_clean()
    assert not window.has_unsaved_changes()
    doc.attach_image(window.state.image.pixels)
    with doc.transaction("synthesize (remove)"):
        doc.write_image(0, (0, 4, 0, 4), np.zeros((4, 4), np.float32))
    assert window.has_unsaved_changes()
    window.open_demo("RG1_UNCR.dcm")
    assert asking["asked"] == 1 and window.document is doc
    asking["answer"] = "discard"


def test_quit_offers_save_and_writes_the_session(window, qtbot, asking, tmp_path: Path) -> None:
    asking["answer"], asking["path"] = "save", str(tmp_path / "quit.json")
    assert window.close()
    assert asking["asked"] == 1
    doc, _ = load_session(tmp_path / "quit.json")
    assert len(doc.lesion_ids) == 1


def test_quit_cancel_keeps_the_window(window, qtbot, asking) -> None:
    assert not window.close()
    assert window.isVisible()
    asking["answer"] = "discard"


def test_garbage_is_collected_on_the_gui_thread_only(window, qtbot) -> None:
    """A window makes automatic (any-thread) collection off; the GUI-thread timer collects."""
    import gc

    from lesion_studio.app.gc_guard import GcGuard, install_gc_guard

    assert not gc.isenabled()
    guard = install_gc_guard()
    assert isinstance(guard, GcGuard) and install_gc_guard() is guard

    class Cycle:
        pass

    for _ in range(gc.get_threshold()[0] + 10):
        a, b = Cycle(), Cycle()
        a.b, b.a = b, a
    del a, b
    assert guard.collect_due() > 0


def test_synthesize_panel_fits_a_1366_screen_without_horizontal_scrolling(window, qtbot, open_and_wait) -> None:
    window.resize(1366, 768)
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))
    window.side_tabs.setCurrentIndex(1)
    qtbot.wait(50)
    scroll = window.side_tabs.currentWidget()
    assert scroll.widget().minimumSizeHint().width() <= scroll.viewport().width()
    assert not scroll.horizontalScrollBar().isVisible()
    panel = window.synthesis_panel
    assert window.height() == 768 and window.width() == 1366
    viewport = scroll.viewport().rect()

    def on_screen(widget) -> bool:
        """The widget's whole rect lies in the visible part of the tab (no scrolling needed)."""
        top_left = widget.mapTo(scroll.viewport(), widget.rect().topLeft())
        return viewport.contains(top_left) and viewport.contains(top_left + widget.rect().bottomRight())

    key_controls = ("add_model_button", "mode_combo", "status_label", "unit_label", "flip_h_check",
                    "accept_button", "reject_button", "place_button")
    for shown_variants in (False, True):  # a row of variant thumbnails must not push Reject away
        panel.show_variants([np.zeros((8, 8), np.float32)] * 4 if shown_variants else [], 0)
        qtbot.wait(20)
        assert not scroll.horizontalScrollBar().isVisible()
        for name in key_controls:
            assert on_screen(getattr(panel, name)), (name, shown_variants)
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QWidget

    for widget in panel.findChildren(QWidget):
        if isinstance(widget, (QAbstractButton, QComboBox, QLabel)) and widget.isVisibleTo(panel):
            # nothing is squeezed below its size (no cut-off text)
            right = widget.mapTo(scroll.viewport(), widget.rect().topRight()).x()
            assert right <= viewport.right() and widget.width() >= widget.minimumSizeHint().width(), widget


def test_menu_separators_are_visible_in_the_dark_theme(window, qtbot) -> None:
    menu = window.menuBar().actions()[0].menu()  # File
    separator = next(a for a in menu.actions() if a.isSeparator())
    menu.adjustSize()
    image = menu.grab().toImage()
    rect = menu.actionGeometry(separator)
    values = [image.pixelColor(x, y).value() for y in range(rect.top(), rect.bottom() + 1)
              for x in range(rect.left(), rect.right() + 1)]
    background = image.pixelColor(rect.left() + 1, rect.top() - 3).value()
    assert max(abs(v - background) for v in values) >= 25, (background, sorted(set(values)))


def test_size_reads_width_by_height_like_the_boxes(window, open_and_wait) -> None:
    open_and_wait(window, sample_file("RG1_UNCR.dcm"))  # 1955 rows × 1841 columns
    assert "Size: 1841 × 1955 px (W × H)" in window.info_panel.label.text()


def test_lesion_overlay_is_semi_transparent_by_default(window) -> None:
    from lesion_studio.widgets.label_overlay import SELECTED_ALPHA_BOOST

    assert window.tools.settings.opacity + SELECTED_ALPHA_BOOST <= 0.5  # even the selected lesion


def test_flood_fill_on_open_background_is_refused(window, qtbot, open_and_wait) -> None:
    open_and_wait(window, sample_file("CT_small.dcm"))
    messages: list[str] = []
    window.annotations.message.connect(messages.append)
    window.tools.update(tool="fill")
    window.annotations._on_click(10.0, 10.0, 0)  # empty label map: the whole image is one region
    assert window.document.lesion_ids == () and "Fill refused" in messages[-1]
    _paint_lesion(window)  # a closed lesion outline can still be filled inside
    with window.document.transaction("hole"):
        window.document.paint_mask(np.pad(np.ones((2, 2), bool), ((44, 82), (44, 82))), 0)
    window.annotations._on_click(44.5, 44.5, 0)
    assert window.document.labels[44, 44] != 0


def test_h_hides_the_preview_outline_and_undo_drops_the_preview(window, qtbot, open_and_wait) -> None:
    from PySide6.QtCore import Qt

    open_and_wait(window, sample_file("RG1_UNCR.dcm"))
    syn = window.synthesis
    syn.set_size(40.0)
    with qtbot.waitSignal(syn.previewShown, timeout=60_000):
        syn.request_preview((900.0, 600.0))
    assert syn.outline.isVisible()
    window.canvas.view.setFocus()
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_H)
    assert not syn.outline.isVisible() and not syn.crop_rect.isVisible()
    for key in (Qt.Key.Key_Space, Qt.Key.Key_Space):  # original / synthetic redraws: still hidden
        qtbot.keyClick(window.canvas.view, key)
        assert not syn.outline.isVisible() and not syn.crop_rect.isVisible()
    window.synthesis_panel.split_check.setChecked(True)
    window.canvas.cursorLeft.emit()
    assert not (syn.outline.isVisible() or syn.crop_rect.isVisible() or syn.split_line.isVisible())
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_H)
    assert syn.outline.isVisible() and syn.crop_rect.isVisible() and syn.split_line.isVisible()
    window.synthesis_panel.split_check.setChecked(False)
    window.undo_action.trigger()
    assert syn.preview is None and not syn.outline.isVisible()


# ---------------------------------------------------------------- state follows the mode (issue 16, 6)

_MODE_WORDS = {"inpaint": "new lesion", "remove": "remove", "outpaint": "outpaint"}


def test_synthesis_hint_follows_the_mode_in_both_directions(window, qtbot, open_and_wait) -> None:
    """Inpaint mode used to say "click on a lesion to outpaint it": the hint is the mode's."""
    from PySide6.QtCore import Qt

    open_and_wait(window, sample_file("CT_small.dcm"))
    panel, syn = window.synthesis_panel, window.synthesis
    window.canvas.view.setFocus()
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_P)
    assert window.tools.settings.tool == "place"

    def choose(mode: str) -> None:
        panel.mode_combo.activated.emit(panel.mode_combo.findData(mode))
        assert syn.mode == mode and panel.mode_combo.currentData() == mode

    def assert_hint_is(mode: str) -> None:
        text = panel.status_label.text().lower()
        assert _MODE_WORDS[mode] in text, (mode, text)
        assert not any(word in text for other, word in _MODE_WORDS.items() if other != mode), (mode, text)

    modes = ("outpaint", "inpaint", "remove")
    for old in modes:
        for new in modes:
            if new == old:
                continue
            choose(old)
            if old != "inpaint":  # a click on background: the refusal names the mode
                assert syn.request_preview((3.0, 3.0)) is None
            assert_hint_is(old)
            choose(new)
            assert_hint_is(new)
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_Escape)  # without the place tool: how to start
    assert "press p" in panel.status_label.text().lower()
    assert_hint_is(syn.mode)


def test_the_tool_follows_the_side_tab(window, qtbot, open_and_wait) -> None:
    """The place tool stayed active on the Annotate tab (and a brush on the Synthesize tab)."""
    from PySide6.QtCore import Qt

    open_and_wait(window, sample_file("CT_small.dcm"))
    tabs, tools = window.side_tabs, window.tools
    annotate, synthesize = (next(i for i in range(tabs.count()) if tabs.tabText(i) == t) for t in ("Annotate", "Synthesize"))
    canvas = window.canvas
    tabs.setCurrentIndex(synthesize)
    window.canvas.view.setFocus()
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_P)
    assert tools.settings.tool == "place"
    tabs.setCurrentIndex(annotate)
    assert tools.settings.tool == "navigate" and not canvas.view_box.tool_active
    assert window.annotation_panel.tool_buttons["navigate"].isChecked()
    assert not window.synthesis_panel.place_button.isChecked()
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_P)  # P on the Annotate tab: to the Synthesize tab
    assert tabs.currentIndex() == synthesize and tools.settings.tool == "place"
    assert window.synthesis_panel.place_button.isChecked()
    tabs.setCurrentIndex(annotate)
    qtbot.keyClick(window.canvas.view, Qt.Key.Key_B)
    assert tools.settings.tool == "brush" and tabs.currentIndex() == annotate
    canvas.show_brush_outline(20.0, 20.0, 3.0, 3.0)  # as the cursor over the image leaves it
    window.annotations.canvas.toolPressed.emit(30.0, 30.0, 0)  # a stroke starts...
    window.annotations.canvas.toolReleased.emit(30.0, 30.0, 0)
    assert window.document.lesion_ids == (1,)
    tabs.setCurrentIndex(synthesize)  # ...and no annotation tool stays half-active over there
    assert tools.settings.tool == "place" and tabs.currentIndex() == synthesize
    assert not canvas.brush_outline.isVisible()
    window.canvas.toolPressed.emit(60.0, 60.0, 0)
    window.canvas.toolMoved.emit(70.0, 70.0, 0)
    window.canvas.toolReleased.emit(70.0, 70.0, 0)
    window.annotations.flush()
    assert window.document.lesion_ids == (1,) and window.document.labels[60:71, 60:71].max() == 0
    tabs.setCurrentIndex(annotate)  # back: the brush the user had
    assert tools.settings.tool == "brush" and window.annotation_panel.tool_buttons["brush"].isChecked()


def test_undo_leaves_no_stale_selection_or_outline(window, qtbot, open_and_wait) -> None:
    """The selection (highlighted lesion, table row) and a lasso outline survived an undo."""
    open_and_wait(window, sample_file("CT_small.dcm"))
    doc, canvas, table = window.document, window.canvas, window.lesion_table
    window.tools.update(tool="brush", radius=3.0, radius_unit="px")
    canvas.toolPressed.emit(40.0, 40.0, 0)
    canvas.toolMoved.emit(40.0, 50.0, 0)
    canvas.toolReleased.emit(40.0, 50.0, 0)
    window.annotations.flush()
    assert doc.lesion_ids == (1,) and doc.selected_id == 1
    window.undo_action.trigger()
    window.annotations.flush()
    assert doc.lesion_ids == () and doc.selected_id == 0
    overlay_alpha = window.annotations.overlay._lut[:, 3]
    assert overlay_alpha.max() <= round(255 * window.tools.settings.opacity)  # nothing drawn selected
    assert not table.table.selectionModel().selectedRows()
    window.redo_action.trigger()
    assert doc.lesion_ids == (1,)
    window.tools.update(tool="lasso")
    canvas.toolPressed.emit(80.0, 80.0, 0)
    canvas.toolMoved.emit(80.0, 100.0, 0)
    canvas.toolMoved.emit(100.0, 100.0, 0)
    assert not canvas.lasso_path.path().isEmpty()
    window.undo_action.trigger()
    assert canvas.lasso_path.path().isEmpty()
    canvas.toolReleased.emit(100.0, 80.0, 0)  # the release of the abandoned outline fills nothing
    assert doc.lesion_ids == () and doc.labels.max() == 0
