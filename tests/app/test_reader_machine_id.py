"""Reader ids starting with "machine-" belong to automatic readers: the analysis leaves them out
of the pooled human verdict, so the reader app must not let a person read under one."""

from __future__ import annotations

from pathlib import Path

from tests._reader_study import make_study


def test_a_person_cannot_read_under_a_machine_reader_id(window, tmp_path: Path) -> None:
    ui = window.reader_study_ui
    ui.full_screen = False
    errors: list[str] = []
    window.show_error = lambda title, text: errors.append(f"{title}: {text}")
    folder = make_study(tmp_path / "study", n_cases=2)
    assert ui.open_reader(folder, "machine-1") is None
    assert errors and "machine-" in errors[-1]
    assert not (folder / "sessions" / "machine-1.json").exists()
    view = ui.open_reader(folder, "alice")
    assert view is not None
    view.close()
