"""Reader mode driven by key presses: answers, completeness, going back, pause and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from lesion_studio.core.reader_study.session import ReaderSession, load_study
from lesion_studio.widgets.reader_view import ReaderView
from tests._reader_study import make_study


class FakeClock:
    """A monotonic clock the test moves by hand (deterministic reading times)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_view(qtbot, folder: Path, reader: str = "alice", clock=None) -> ReaderView:
    study = load_study(folder)
    view = ReaderView(ReaderSession.open(study, reader), **({"clock": clock} if clock else {}))
    qtbot.addWidget(view)
    view.resize(1100, 700)
    view.show()
    qtbot.waitExposed(view)
    return view


def keys(qtbot, view: ReaderView, *sequence) -> None:
    for key in sequence:
        qtbot.keyClick(view, key)


def test_read_pause_and_resume_at_the_same_case(qtbot, tmp_path: Path) -> None:
    folder = make_study(tmp_path / "study", 4)
    clock = FakeClock()
    view = open_view(qtbot, folder, clock=clock)
    assert view.pages.currentWidget() is view.intro_page
    keys(qtbot, view, Qt.Key.Key_Return)  # leave the instructions
    assert view.case_label.text() == "Case 1 of 4"
    assert view.canvas.image_item.image is not None and view.canvas.image_item.image.shape == (50, 50)
    shown = np.asarray(view.canvas.image_item.image)
    assert np.array_equal(shown, load_study(folder).case_image(0))  # native HU, windowed by levels
    assert tuple(view.canvas.image_item.levels) == (-1350.0, 150.0)  # the study's window -600 / 1500

    keys(qtbot, view, Qt.Key.Key_R)
    clock.now += 4.25
    keys(qtbot, view, Qt.Key.Key_4, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 2 of 4" and view.progress.value() == 1
    clock.now += 2.0
    keys(qtbot, view, Qt.Key.Key_S, Qt.Key.Key_1, Qt.Key.Key_Right)
    assert view.case_label.text() == "Case 3 of 4"
    clock.now += 7.0
    keys(qtbot, view, Qt.Key.Key_R)  # half an answer, then a pause
    with qtbot.waitSignal(view.paused, timeout=2000):
        keys(qtbot, view, Qt.Key.Key_Escape)
    assert not view.isVisible()

    session_file = folder / "sessions" / "alice.json"
    doc = json.loads(session_file.read_text())
    assert doc["format"] == "lesion-studio-reader-session" and doc["reader"] == "alice"
    assert doc["study_id"] == load_study(folder).study_id
    assert doc["position"] == 2 and doc["finished"] is False
    assert [(a["case_id"], a["call"], a["confidence"], a["lesion_present"]) for a in doc["answers"]] == [
        ("case_0001", "real", 4, None), ("case_0002", "synthetic", 1, None)]
    assert [a["seconds"] for a in doc["answers"]] == [4.25, 2.0]

    clock.now += 3600.0  # paused time is never counted
    again = open_view(qtbot, folder, clock=clock)
    assert "resume at case 3 of 4" in again.intro_start.text()
    keys(qtbot, again, Qt.Key.Key_Enter)
    assert again.case_label.text() == "Case 3 of 4"
    assert again.call is None and again.confidence is None  # the half answer before the pause is gone
    clock.now += 1.5
    keys(qtbot, again, Qt.Key.Key_S, Qt.Key.Key_5, Qt.Key.Key_Return)
    clock.now += 0.5
    with qtbot.waitSignal(again.finishedReading, timeout=2000) as finished:
        keys(qtbot, again, Qt.Key.Key_R, Qt.Key.Key_2, Qt.Key.Key_Return)
    assert finished.args == [4]
    assert again.pages.currentWidget() is again.done_page
    assert "Thank you — 4 cases answered" in again.done_title.text()
    doc = json.loads(session_file.read_text())
    assert doc["finished"] is True and doc["position"] == 4 and len(doc["answers"]) == 4
    assert [a["seconds"] for a in doc["answers"]][2:] == [1.5, 0.5]
    assert [a["call"] for a in doc["answers"]] == ["real", "synthetic", "synthetic", "real"]

    finished_view = open_view(qtbot, folder, clock=clock)  # a finished session opens on the thank-you page
    assert finished_view.pages.currentWidget() is finished_view.done_page


def test_reading_time_uses_the_real_monotonic_clock(qtbot, tmp_path: Path) -> None:
    view = open_view(qtbot, make_study(tmp_path / "study", 2))
    keys(qtbot, view, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_3)
    qtbot.wait(20)
    keys(qtbot, view, Qt.Key.Key_Return)
    assert view.session.answers[0].seconds > 0


def test_an_incomplete_answer_cannot_advance(qtbot, tmp_path: Path) -> None:
    view = open_view(qtbot, make_study(tmp_path / "study", 3, lesion_present=True))
    keys(qtbot, view, Qt.Key.Key_Return)
    keys(qtbot, view, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 1 of 3" and "real (R) or synthetic (S)" in view.hint.text()
    keys(qtbot, view, Qt.Key.Key_S, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 1 of 3" and "confidence" in view.hint.text()
    keys(qtbot, view, Qt.Key.Key_2, Qt.Key.Key_Right)
    assert view.case_label.text() == "Case 1 of 3" and "lesion present" in view.hint.text()
    assert not (tmp_path / "study" / "sessions" / "alice.json").exists()
    keys(qtbot, view, Qt.Key.Key_N)
    assert view.hint.text() == "Press Enter to continue."
    assert view.call_buttons[1].isChecked() and view.confidence_buttons[1].isChecked()
    assert view.lesion_buttons[1].isChecked()
    keys(qtbot, view, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 2 of 3"
    assert not any(b.isChecked() for b in view.call_buttons + view.confidence_buttons + view.lesion_buttons)
    answer = view.session.answers[0]
    assert (answer.call, answer.confidence, answer.lesion_present) == ("synthetic", 2, False)


def test_changing_the_answer_before_enter_keeps_the_last_choice(qtbot, tmp_path: Path) -> None:
    view = open_view(qtbot, make_study(tmp_path / "study", 2))
    keys(qtbot, view, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_5, Qt.Key.Key_S, Qt.Key.Key_2, Qt.Key.Key_9)
    assert (view.call, view.confidence) == ("synthetic", 2)  # 9 is above the study's 5 levels
    keys(qtbot, view, Qt.Key.Key_Return)
    assert (view.session.answers[0].call, view.session.answers[0].confidence) == ("synthetic", 2)


def test_no_going_back_when_the_study_does_not_allow_it(qtbot, tmp_path: Path) -> None:
    view = open_view(qtbot, make_study(tmp_path / "study", 3, allow_back=False))
    keys(qtbot, view, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_3, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 2 of 3"
    keys(qtbot, view, Qt.Key.Key_Left)
    assert view.case_label.text() == "Case 2 of 3" and "does not allow" in view.hint.text()
    keys(qtbot, view, Qt.Key.Key_Backspace)
    assert view.case_label.text() == "Case 2 of 3" and view.session.position == 1
    assert "Backspace" not in view.legend.text()


def test_going_back_shows_and_replaces_the_earlier_answer(qtbot, tmp_path: Path) -> None:
    folder = make_study(tmp_path / "study", 3, allow_back=True)
    clock = FakeClock()
    view = open_view(qtbot, folder, clock=clock)
    keys(qtbot, view, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_3)
    clock.now += 2.0
    keys(qtbot, view, Qt.Key.Key_Return)
    clock.now += 1.0
    keys(qtbot, view, Qt.Key.Key_Left)
    assert view.case_label.text() == "Case 1 of 3"
    assert (view.call, view.confidence) == ("real", 3) and view.call_buttons[0].isChecked()
    keys(qtbot, view, Qt.Key.Key_Left)
    assert "first case" in view.hint.text()
    clock.now += 0.5
    keys(qtbot, view, Qt.Key.Key_S, Qt.Key.Key_5, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 2 of 3"
    doc = json.loads((folder / "sessions" / "alice.json").read_text())
    assert doc["answers"] == [{"case_id": "case_0001", "call": "synthetic", "confidence": 5,
                               "lesion_present": None, "seconds": 2.5}]
    assert "Backspace back" in view.legend.text()
    keys(qtbot, view, Qt.Key.Key_R, Qt.Key.Key_1, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_1, Qt.Key.Key_Return)
    assert view.pages.currentWidget() is view.done_page
    keys(qtbot, view, Qt.Key.Key_Backspace)  # from the thank-you page back to the last case
    assert view.pages.currentWidget() is view.reading_page and view.case_label.text() == "Case 3 of 3"


def test_the_reader_sees_no_case_ids_or_file_names(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QLabel, QPushButton

    view = open_view(qtbot, make_study(tmp_path / "study", 2))
    keys(qtbot, view, Qt.Key.Key_Return)
    texts = [w.text() for w in view.findChildren(QLabel) + view.findChildren(QPushButton)]
    texts += [view.windowTitle(), view.progress.text()]
    assert not any("case_" in t or ".npy" in t for t in texts)


def test_zoom_and_window_level_are_allowed_and_reset_per_case(qtbot, tmp_path: Path) -> None:
    view = open_view(qtbot, make_study(tmp_path / "study", 2))
    keys(qtbot, view, Qt.Key.Key_Return)
    fitted = view.canvas.zoom_factor()
    keys(qtbot, view, Qt.Key.Key_Plus, Qt.Key.Key_Plus)
    assert view.canvas.zoom_factor() > fitted * 1.4
    view.canvas.windowDragged.emit(64.0, -32.0)  # a right-drag: wider, lower level
    low, high = view.canvas.image_item.levels
    assert high - low > 1500.0 and (low + high) / 2 < -600.0
    keys(qtbot, view, Qt.Key.Key_W)
    assert tuple(view.canvas.image_item.levels) == (-1350.0, 150.0)
    keys(qtbot, view, Qt.Key.Key_Home)
    assert view.canvas.zoom_factor() == pytest.approx(fitted, rel=0.05)
    view.canvas.windowDragged.emit(64.0, -32.0)
    keys(qtbot, view, Qt.Key.Key_R, Qt.Key.Key_3, Qt.Key.Key_Return)
    assert tuple(view.canvas.image_item.levels) == (-1350.0, 150.0)  # every case starts with the study's window


def test_an_unreadable_case_is_reported_not_crashed_on(qtbot, tmp_path: Path) -> None:
    folder = make_study(tmp_path / "study", 2)
    view = open_view(qtbot, folder)
    (folder / "cases" / "case_0001.npy").write_bytes(b"broken")
    keys(qtbot, view, Qt.Key.Key_Return)
    assert view.image_error.isVisibleTo(view) and "cannot be shown" in view.image_error.text()


def test_a_failed_save_is_shown_and_the_reader_stays_on_the_case(qtbot, tmp_path: Path, monkeypatch) -> None:
    import lesion_studio.core.reader_study.session as module

    view = open_view(qtbot, make_study(tmp_path / "study", 2))
    monkeypatch.setattr(module, "write_json", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "disk full")))
    keys(qtbot, view, Qt.Key.Key_Return, Qt.Key.Key_R, Qt.Key.Key_3, Qt.Key.Key_Return)
    assert view.case_label.text() == "Case 1 of 2"
    assert "could not be saved" in view.last_error and view.error_label.isVisibleTo(view)


def test_time_away_from_the_window_is_not_reading_time(qtbot, tmp_path: Path) -> None:
    clock = FakeClock()
    view = open_view(qtbot, make_study(tmp_path / "study", 2), clock=clock)
    view.resume_timing()  # on the instructions page: no case clock runs
    assert view.elapsed_s() == 0.0
    keys(qtbot, view, Qt.Key.Key_Return)
    clock.now += 2.0
    view.suspend_timing()  # what losing focus or minimizing does
    clock.now += 600.0
    view.resume_timing()
    clock.now += 1.0
    keys(qtbot, view, Qt.Key.Key_R, Qt.Key.Key_3, Qt.Key.Key_Return)
    assert view.session.answers[0].seconds == 3.0
