"""The Jobs menu, dock, dialog-to-dashboard flow, cancel/resume buttons, errors, history across
windows and the close guard. (Event-loop gaps while a CPU training runs are measured by
benchmarks/event_loop.py: wall-clock bounds do not belong in tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from lesion_studio.app.jobs_ui import JobsUi, install_jobs_ui
from lesion_studio.app.main_window import MainWindow
from lesion_studio.core.jobs import JobState
from lesion_studio.widgets.theme import apply_dark_theme
from tests.app._jobs_helpers import TINY_PIX2PIX, phantom_dataset, tiny_config  # noqa: F401


def _make_window(qtbot, qapp) -> MainWindow:
    apply_dark_theme(qapp)
    win = MainWindow(device="cpu", offer_recovery=False)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def ui(qtbot, qapp):
    win = _make_window(qtbot, qapp)
    jobs = install_jobs_ui(win)
    jobs.manager.cpu_threads = 1
    jobs.show_error = lambda title, text: pytest.fail(f"unexpected error box: {title}: {text}")
    yield jobs
    jobs.shutdown(30_000)


def _fill_tiny(dialog, dataset: Path, out_dir: Path, steps: int = 20) -> None:
    dialog.set_family("pix2pix")
    dialog.set_dataset(dataset)
    for key, value in TINY_PIX2PIX.items():
        dialog.set_field(f"model.{key}", value)
    for key, value in dict(steps=steps, val_every=10, sample_every=10, checkpoint_every=10, log_every=1,
                           num_threads=1).items():
        dialog.set_field(f"run.{key}", value)
    dialog.set_device("cpu")
    dialog.set_out_dir(out_dir)


def _accepting(fill):
    def exec_dialog(dialog) -> bool:
        fill(dialog)
        dialog.accept()
        return dialog.result() == dialog.DialogCode.Accepted
    return exec_dialog


def test_menu_and_hidden_dock(ui):
    titles = [a.text() for a in ui.window.menuBar().actions()]
    assert "&Jobs" in titles and titles.index("&Jobs") < titles.index("&Help")
    texts = [a.text() for a in ui.menu.actions()]
    assert texts[:4] == ["&New training…", "Run &experiment (evaluate)…", "&Batch export…", "Open experiment &results…"]
    assert "Show &jobs / dashboard" in texts
    assert not ui.dock.isVisible()
    ui.show_action.trigger()
    assert ui.dock.isVisible()


def test_training_from_the_dialog_runs_to_completion_and_fills_the_dashboard(ui, qtbot, phantom_dataset, tmp_path):
    ui.exec_dialog = _accepting(lambda d: _fill_tiny(d, phantom_dataset, tmp_path / "run"))
    ui.new_training_action.trigger()
    assert ui.dock.isVisible()
    (record,) = ui.manager.records
    assert ui.panel.selected_id() == record.id
    qtbot.waitUntil(lambda: record.state is JobState.DONE, timeout=60_000)
    qtbot.waitUntil(lambda: ui.panel.table.item(0, 2).text() == "done", timeout=5_000)
    ui.dashboard.refresh()
    lengths = ui.dashboard.curve_lengths()
    assert lengths["loss_plot/l1"] == 20 and lengths["loss_plot/g_adv"] == 20
    assert lengths["lr_plot/generator"] == 20 and lengths["speed_plot/it/s"] == 20
    assert lengths["val_plot/masked_psnr"] == 2
    assert ui.dashboard.sample_item.image is not None
    assert "final checkpoint" in ui.panel.log_text()
    assert "100%" in ui.panel.table.item(0, 3).text()


def test_dialog_refuses_a_broken_dataset_and_lists_its_problems(ui, tmp_path):
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "dataset.json").write_text('{"format": "lesion-studio-dataset", "version": 1, "cases": '
                                         '[{"id": "a", "image": "images/missing.png", "mask": null, '
                                         '"patient_id": "p", "has_lesion": false, "split": "train"}]}')
    seen = {}

    def fill(dialog):
        dialog.set_dataset(broken)
        seen["problems"] = dialog.problems.count()
        seen["ok_enabled"] = dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()

    ui.exec_dialog = _accepting(fill)
    assert ui.open_new_training() is None
    assert seen["problems"] >= 1 and not seen["ok_enabled"]
    assert ui.manager.records == []


def test_failing_job_shows_its_reason(ui, qtbot, phantom_dataset, tmp_path):
    broken = tmp_path / "gone"
    broken.mkdir()
    record = ui.start_training(tiny_config(broken, tmp_path / "run"))  # no dataset.json: the validator says so
    qtbot.waitUntil(lambda: record.state is JobState.FAILED, timeout=30_000)
    qtbot.waitUntil(lambda: bool(ui.panel.error_text()), timeout=5_000)
    text = ui.panel.error_text()
    assert "ConfigError" in text and "dataset.json" in text and "Hint" in text
    assert "error:" in ui.panel.log_text()
    assert not ui.panel.resume_button.isEnabled()


def test_cancel_and_resume_buttons(ui, qtbot, phantom_dataset, tmp_path):
    record = ui.start_training(tiny_config(phantom_dataset, tmp_path / "run", steps=150, checkpoint_every=0,
                                           val_every=0, sample_every=0))
    qtbot.waitUntil(lambda: record.step >= 5, timeout=60_000)
    qtbot.waitUntil(lambda: ui.panel.cancel_button.isEnabled(), timeout=5_000)
    qtbot.mouseClick(ui.panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: record.state is JobState.CANCELLED, timeout=60_000)
    stopped = record.checkpoint_step
    assert Path(record.checkpoint + ".safetensors").is_file()
    qtbot.waitUntil(lambda: ui.panel.resume_button.isEnabled(), timeout=5_000)
    qtbot.mouseClick(ui.panel.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: record.state is JobState.DONE, timeout=120_000)
    assert record.step == 150 and record.attempts == 2
    assert f"resuming from {tmp_path / 'run'}/cancelled_step_{stopped:07d}" in ui.panel.log_text()


def test_history_survives_a_new_main_window(qtbot, qapp, phantom_dataset, tmp_path):
    first = install_jobs_ui(_make_window(qtbot, qapp))
    first.manager.cpu_threads = 1
    record = first.start_training(tiny_config(phantom_dataset, tmp_path / "run", steps=20))
    qtbot.waitUntil(lambda: record.state is JobState.DONE, timeout=60_000)
    first.window.close()

    second = install_jobs_ui(_make_window(qtbot, qapp))
    (again,) = second.manager.records
    assert again.id == record.id and again.state is JobState.DONE
    assert again.checkpoint == record.checkpoint and again.best_metrics == record.best_metrics
    second.panel.select(again.id)
    second.dashboard.refresh()
    assert second.dashboard.curve_lengths()["loss_plot/l1"] == 20
    # which criterion picked the best checkpoint survives too, and the dashboard says it (issue 14)
    assert again.selection == record.selection and record.selection["criterion"] == "fcn"
    assert second.dashboard.selection_label.text().startswith("best by fcn")
    assert "final checkpoint" in second.panel.log_text()
    assert second.panel.table.item(0, 2).text() == "done"


def test_closing_with_running_jobs_asks_then_cancels_them_cleanly(qtbot, qapp, phantom_dataset, tmp_path):
    jobs = install_jobs_ui(_make_window(qtbot, qapp))
    jobs.manager.cpu_threads = 1
    questions = []
    answer = {"value": False}

    def ask(n):
        questions.append(n)
        return answer["value"]

    jobs.ask_cancel_running_jobs = ask
    record = jobs.start_training(tiny_config(phantom_dataset, tmp_path / "run", steps=10_000, val_every=0,
                                             sample_every=0, checkpoint_every=0))
    qtbot.waitUntil(lambda: record.step >= 2, timeout=60_000)
    assert not jobs.window.close()  # "no": the window stays, the job keeps running
    assert questions == [1] and jobs.window.isVisible() and record.state is JobState.RUNNING
    answer["value"] = True
    assert jobs.window.close()
    assert questions == [1, 1] and not jobs.window.isVisible()
    assert record.state is JobState.CANCELLED and record.can_resume
