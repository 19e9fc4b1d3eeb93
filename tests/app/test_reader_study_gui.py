"""Issue 17 acceptance, in the GUI: Tools ▸ Reader study ▸ Build (real CT nodules, `real-nodule`)
→ Read by key presses → close → resume → finish → Analyze → the dashboard shows the reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from lesion_studio.app.reader_controller import load_remembered
from lesion_studio.core.jobs import JobState
from lesion_studio.widgets.reader_study_dialogs import BuildStudyDialog, study_toml
from tests._reader_study import LIDC_AXIAL


@pytest.fixture
def nodule_npz(tmp_path: Path) -> Path:
    """The three held-out LIDC nodule patches (tests/data), each also rotated by 90/180/270°
    as its own series: 12 real CT nodules in HU, none from the bundled library's series."""
    with np.load(LIDC_AXIAL) as data:
        images, masks, names = data["images"], data["masks"], data["names"]
        spacing, series = data["spacing_mm"], data["series_uids"]
    out: dict[str, list] = {"images": [], "masks": [], "names": [], "spacing_mm": [], "series_uids": []}
    for k in range(4):
        for i in range(len(images)):
            out["images"].append(np.rot90(images[i], k))
            out["masks"].append(np.rot90(masks[i], k))
            out["names"].append(f"{names[i]}-rot{90 * k}")
            out["spacing_mm"].append(spacing[i])
            out["series_uids"].append(f"{series[i]}.{k}")
    path = tmp_path / "nodules.npz"
    np.savez(path, **{key: np.array(value) for key, value in out.items()})
    return path


def _accept_with(fill):
    def exec_dialog(dialog) -> bool:
        fill(dialog)
        if isinstance(dialog, BuildStudyDialog):
            dialog.try_accept()  # what the Build button does: validate, write the TOML, accept
        else:
            dialog.accept()
        return dialog.result() == dialog.DialogCode.Accepted
    return exec_dialog


def _keys(qtbot, view, *keys) -> None:
    for key in keys:
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            qtbot.wait(5)  # a reading time the session's millisecond rounding keeps
        qtbot.keyClick(view, key)


def test_build_read_resume_and_analyze_from_the_menu(window, qtbot, tmp_path: Path, nodule_npz: Path) -> None:
    ui = window.reader_study_ui
    ui.full_screen = False  # the app reads full screen; offscreen tests show the window normal
    errors: list[str] = []
    window.show_error = lambda title, text: errors.append(f"{title}: {text}")
    assert [a.text() for a in ui.menu.actions()] == ["&Build a study…", "&Read a study…", "&Analyze a study…",
                                                     "&Open saved results…"]
    assert ui.menu.menuAction() in window.tools_menu.actions()

    # -- build (the dialog writes a study TOML; the job manager runs the builder) -------------
    study_dir = tmp_path / "ct-pilot"

    def fill_build(dialog: BuildStudyDialog) -> None:
        dialog.name_edit.setText("CT nodules pilot")
        dialog.out_edit.setText(str(study_dir))
        dialog.source_edit.setText(str(nodule_npz))
        dialog.models_edit.setText("real-nodule")
        dialog.cases_spin.setValue(3)

    ui.exec_dialog = _accept_with(fill_build)
    record = ui.open_build_dialog()
    assert record is not None, errors
    qtbot.waitUntil(lambda: record.state.finished, timeout=300_000)
    assert record.state is JobState.DONE, window.jobs_ui.manager.log_lines(record.id)
    toml = tmp_path / "ct-pilot.toml"
    assert toml.is_file() and 'models = ["real-nodule"]' in toml.read_text()
    key = tmp_path / "ct-pilot.key.json"
    assert key.is_file() and (study_dir / "study.json").is_file()
    study = json.loads((study_dir / "study.json").read_text())
    n = len(study["cases"])
    assert n == 6 and study["units"] == "HU"

    # -- read: two cases, then close (Esc) -----------------------------------------------------
    ui.exec_dialog = _accept_with(lambda d: (d.folder_edit.setText(str(study_dir)), d.reader_edit.setText("alice")))
    view = ui.open_read_dialog()
    assert view is not None, errors
    qtbot.addWidget(view)
    qtbot.waitExposed(view)
    # Keys go to the active window: the reader's, not the main window (whose S and digits are tools).
    qtbot.waitUntil(lambda: QApplication.activeWindow() is view, timeout=5000)
    _keys(qtbot, view, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_4, Qt.Key.Key_Return)
    _keys(qtbot, view, Qt.Key.Key_S, Qt.Key.Key_2, Qt.Key.Key_Return)
    assert view.case_label.text() == f"Case 3 of {n}"
    with qtbot.waitSignal(view.paused, timeout=5000):
        _keys(qtbot, view, Qt.Key.Key_Escape)
    assert load_remembered()["reader"] == "alice"

    # -- resume: the dialog remembers the study and the reader; reading goes on at case 3 ------
    seen: list[tuple[str, str, str]] = []
    ui.exec_dialog = _accept_with(lambda d: seen.append((d.study_dir(), d.reader(), d.status.text())))
    again = ui.open_read_dialog()
    assert seen[0][:2] == (str(study_dir), "alice")
    assert "resumes at case 3" in seen[0][2]
    qtbot.addWidget(again)
    qtbot.waitExposed(again)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is again, timeout=5000)
    _keys(qtbot, again, Qt.Key.Key_Return)
    assert again.case_label.text() == f"Case 3 of {n}"
    for i in range(n - 2):
        _keys(qtbot, again, Qt.Key.Key_R if i % 2 else Qt.Key.Key_S, Qt.Key.Key_3, Qt.Key.Key_Return)
    assert again.pages.currentWidget() is again.done_page
    assert f"Thank you — {n} cases answered" in again.done_title.text()
    session = json.loads((study_dir / "sessions" / "alice.json").read_text())
    assert session["finished"] is True and len(session["answers"]) == n
    assert all(a["seconds"] > 0 for a in session["answers"])
    _keys(qtbot, again, Qt.Key.Key_Return)  # closes the thank-you page

    # -- analyze: study folder + the key beside it -> the dashboard ----------------------------
    analyzed: list[str] = []
    ui.exec_dialog = _accept_with(lambda d: (d.folder_edit.setText(str(study_dir)), analyzed.append(d.key_file())))
    with qtbot.waitSignal(ui.analysisFinished, timeout=120_000) as shown:
        assert ui.open_analyze_dialog()
    assert Path(analyzed[0]) == key  # <study>.key.json filled in
    dashboard = shown.args[0]
    qtbot.addWidget(dashboard)
    assert not errors
    readers = [dashboard.reader_table.item(r, 0).text() for r in range(dashboard.reader_table.rowCount())]
    assert readers == ["alice", "pooled"]
    assert dashboard.reader_table.item(0, 1).text() == str(n)
    assert "(alice, 6 calls" in dashboard.verdict.text()
    assert dashboard.results["readers"]["alice"]["by_model"].keys() == {"real-nodule"}

    # -- the same results saved (as `lesion-studio study analyze` writes them) open again -------
    from lesion_studio.core.reader_study.analysis import write_results

    write_results(dashboard.results, tmp_path / "ct-pilot.results", figures=False)
    reopened = ui.open_results_file(tmp_path / "ct-pilot.results")
    qtbot.addWidget(reopened)
    assert reopened.verdict.text() == dashboard.verdict.text() and not errors
    assert ui.open_results_file(study_dir / "study.json") is None and "not a lesion-studio" in errors[-1]


def test_reading_a_folder_that_is_no_study_shows_an_error(window, tmp_path: Path) -> None:
    ui = window.reader_study_ui
    errors: list[str] = []
    window.show_error = lambda title, text: errors.append(text)
    assert ui.open_reader(tmp_path, "alice") is None
    assert errors and "study.json" in errors[0]


def test_build_dialog_reports_problems_and_writes_nothing(qtbot, tmp_path: Path) -> None:
    dialog = BuildStudyDialog()
    qtbot.addWidget(dialog)
    dialog.out_edit.setText(str(tmp_path / "study"))
    dialog.source_edit.setText(str(tmp_path / "missing.npz"))
    dialog.try_accept()
    assert dialog.result() != dialog.DialogCode.Accepted
    assert "missing.npz" in dialog.status.text() and "not found" in dialog.status.text()
    assert not (tmp_path / "study.toml").exists()


def test_study_toml_round_trips_through_the_config_loader(tmp_path: Path) -> None:
    import tomllib

    text = study_toml({"study": {"name": 'say "hi"', "out_dir": str(tmp_path / "s"), "size_bins_mm": [3.0, 6.0],
                                 "allow_back": True, "key": None},
                       "real": {"npz": str(LIDC_AXIAL)}, "synthetic": {"models": ["real-nodule"]}})
    data = tomllib.loads(text)
    assert data["study"] == {"name": 'say "hi"', "out_dir": str(tmp_path / "s"), "size_bins_mm": [3.0, 6.0],
                             "allow_back": True}
    assert data["synthetic"]["models"] == ["real-nodule"]


def test_one_reader_window_per_session(window, qtbot, tmp_path: Path) -> None:
    from tests._reader_study import make_study

    ui = window.reader_study_ui
    ui.full_screen = False
    folder = make_study(tmp_path / "study", 3)
    first = ui.open_reader(folder, "alice")
    qtbot.addWidget(first)
    assert ui.open_reader(folder, "alice") is first
    other = ui.open_reader(folder, "bob")
    qtbot.addWidget(other)
    assert other is not first and other.session.reader == "bob"
