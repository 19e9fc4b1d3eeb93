"""Jobs started from the GUI into a refused output folder (issue 18): the reason is shown,
"Use this folder anyway" is offered exactly where the CLI's `--force` would help, and choosing
it runs the job there. The message boxes are the `JobsUi` seams `ask_use_folder_anyway` and
`show_error`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from lesion_studio.app.jobs_ui import JobsUi, install_jobs_ui
from lesion_studio.app.main_window import MainWindow
from lesion_studio.core.jobs import JobState
from lesion_studio.core.output_folder import MARKER, open_output_folder
from lesion_studio.core.phantom import generate_phantom_dataset
from tests.app._jobs_helpers import phantom_dataset, tiny_config  # noqa: F401


class Boxes:
    """Stands in for the two message boxes and records what they were asked."""

    def __init__(self, ui: JobsUi, answer: bool) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.errors: list[str] = []
        ui.ask_use_folder_anyway = self._ask
        ui.show_error = lambda title, text: self.errors.append(text)

    def _ask(self, title: str, text: str) -> bool:
        self.asked.append(text)
        return self.answer


@pytest.fixture
def ui(qtbot, qapp):
    win = MainWindow(device="cpu", offer_recovery=False)
    qtbot.addWidget(win)
    jobs = install_jobs_ui(win)
    jobs.manager.cpu_threads = 1
    yield jobs
    jobs.shutdown(30_000)


def _foreign(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return folder


def _wait_done(qtbot, ui: JobsUi, record, timeout_ms: int = 240_000):
    qtbot.waitUntil(lambda: ui.manager.record(record.id).state.finished, timeout=timeout_ms)
    return ui.manager.record(record.id)


def test_a_foreign_run_folder_asks_and_anyway_trains_there(ui, qtbot, phantom_dataset, tmp_path: Path) -> None:
    out = _foreign(tmp_path / "run")
    config = tiny_config(phantom_dataset, out, steps=2, val_every=0, sample_every=0, checkpoint_every=0)
    boxes = Boxes(ui, answer=False)
    assert ui.start_training(config) is None  # declined: nothing queued, nothing written
    assert len(boxes.asked) == 1 and "is not empty" in boxes.asked[0] and "notes.txt" in boxes.asked[0]
    assert not boxes.errors and not ui.manager.records and not (out / MARKER).exists()

    boxes.answer = True
    record = ui.start_training(config)
    assert record is not None and len(boxes.asked) == 2
    done = _wait_done(qtbot, ui, record)
    assert done.state is JobState.DONE, done.error
    assert (out / "final.json").is_file() and (out / MARKER).is_file()
    assert (out / "notes.txt").read_text() == "mine"  # the person's file is left alone
    assert not boxes.errors


def test_a_foreign_export_folder_anyway_exports_there(ui, qtbot, tmp_path: Path) -> None:
    dataset = tmp_path / "phantom"
    generate_phantom_dataset(dataset, "chest", 4, seed=1, size_px=64)
    out = _foreign(tmp_path / "export")
    config = tmp_path / "export.toml"
    config.write_text(f'seed = 1\n[input]\ndataset = "{dataset}"\n[synthesis]\nper_image = 1\n'
                      f'[models]\ndevice = "cpu"\n[output]\ndir = "{out}"\nformats = ["png"]\n')
    boxes = Boxes(ui, answer=True)
    record = ui.start_export(config)
    assert record is not None and len(boxes.asked) == 1 and "output.dir" in boxes.asked[0]
    done = _wait_done(qtbot, ui, record)
    assert done.state is JobState.DONE, done.error
    assert any((out / "png" / "images").glob("*.png")) and (out / MARKER).is_file()
    assert (out / "notes.txt").read_text() == "mine" and not boxes.errors


def test_a_system_folder_offers_no_override(ui, phantom_dataset, tmp_path: Path) -> None:
    boxes = Boxes(ui, answer=True)
    assert ui.start_training(tiny_config(phantom_dataset, Path("/etc/lesion-studio-run"))) is None
    assert boxes.asked == [] and len(boxes.errors) == 1 and "system folder" in boxes.errors[0]
    experiment = tmp_path / "experiment.toml"
    experiment.write_text(f'[experiment]\nname = "x"\ntask = "segmentation"\ndataset = "{phantom_dataset}"\n'
                          f'out_dir = "{Path.home()}"\n[[conditions]]\nname = "real"\n')
    assert ui.start_evaluation(experiment) is None
    assert boxes.asked == [] and len(boxes.errors) == 2 and "home folder" in boxes.errors[1]
    assert not ui.manager.records


@pytest.mark.parametrize("choice", ["Use this folder anyway", "Cancel"])
def test_the_real_question_box_answers_with_the_button_clicked(ui, qtbot, choice: str) -> None:
    seen: list[str] = []

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):  # not shown yet: look again shortly
            QTimer.singleShot(20, click)
            return
        seen.append(box.text())
        button = next(b for b in box.buttons() if b.text().replace("&", "") == choice)
        button.click()

    QTimer.singleShot(0, click)
    answer = ui.ask_use_folder_anyway("Folder not made by lesion-studio", "output.dir: X is not empty")
    assert answer is (choice != "Cancel")
    assert seen and seen[0].startswith("output.dir: X is not empty")


def test_a_folder_in_use_offers_no_override(ui, phantom_dataset, tmp_path: Path) -> None:
    lock = open_output_folder(tmp_path / "busy", kind="train")
    (tmp_path / "busy" / "other.txt").write_text("x")  # foreign content too: in use is said first
    try:
        boxes = Boxes(ui, answer=True)
        assert ui.start_training(tiny_config(phantom_dataset, tmp_path / "busy")) is None
        assert boxes.asked == [] and len(boxes.errors) == 1 and "in use by PID" in boxes.errors[0]
        assert not ui.manager.records
    finally:
        lock.release()
