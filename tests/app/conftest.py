"""Fixtures for GUI tests: a themed main window and a helper to wait for loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesion_studio.app.main_window import MainWindow
from lesion_studio.widgets.theme import apply_dark_theme


@pytest.fixture
def window(qtbot, qapp) -> MainWindow:
    apply_dark_theme(qapp)
    win = MainWindow(device="cpu")
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def open_and_wait(qtbot):
    """Open a path and wait until the image is shown or an error is reported."""

    def _open(win: MainWindow, path: str | Path, series_uid: str | None = None) -> None:
        win.last_error = None
        with qtbot.waitSignal(win.loader.busyChanged, timeout=30_000, check_params_cb=lambda busy: not busy):
            win.open_path(path, series_uid)
        qtbot.wait(10)

    return _open


@pytest.fixture(autouse=True)
def _no_blocking_questions(monkeypatch):
    """Closing windows with unsaved masks asks a modal question; tests answer "discard"."""
    monkeypatch.setattr(MainWindow, "confirm_discard_changes", lambda self: True)
