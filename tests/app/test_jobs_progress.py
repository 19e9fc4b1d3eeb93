"""Issue 16 item 3: training progress that tells the truth from the first second; evaluate
jobs with their own view; double-click opens a finished job's results."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from lesion_studio.app.job_manager import JobContext
from lesion_studio.app.jobs_ui import install_jobs_ui
from lesion_studio.app.main_window import MainWindow
from lesion_studio.core.jobs import JobKind, JobState, MetricHistory
from lesion_studio.models.progress import PhaseEvent, StepEvent, format_rate
from lesion_studio.widgets.theme import apply_dark_theme
from lesion_studio.widgets.training_dashboard import TrainingDashboard
from tests.app._jobs_helpers import phantom_dataset, tiny_config  # noqa: F401


@pytest.fixture
def ui(qtbot, qapp):
    apply_dark_theme(qapp)
    win = MainWindow(device="cpu", offer_recovery=False)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    jobs = install_jobs_ui(win)
    jobs.manager.cpu_threads = 1
    jobs.show_error = lambda title, text: pytest.fail(f"unexpected error box: {title}: {text}")
    yield jobs
    jobs.shutdown(30_000)


class _Hold:
    """Stops the training thread right after it reported a chosen event, until released."""

    def __init__(self, monkeypatch, stop_at) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        original = JobContext.event

        def event(ctx: JobContext, ev: object) -> None:
            original(ctx, ev)
            if stop_at(ev) and not self.reached.is_set():
                self.reached.set()
                assert self.release.wait(60), "test never released the training"

        monkeypatch.setattr(JobContext, "event", event)


def test_first_step_is_visible_long_before_the_first_log_interval(ui, qtbot, monkeypatch, phantom_dataset, tmp_path):
    hold = _Hold(monkeypatch, lambda ev: isinstance(ev, StepEvent))
    record = ui.start_training(tiny_config(phantom_dataset, tmp_path / "run", steps=40, log_every=40,
                                           val_every=0, sample_every=0, checkpoint_every=0))
    try:
        assert hold.reached.wait(60)
        # the training is held right after step 1: all the UI shows must come from that step
        qtbot.waitUntil(lambda: "step 1/40" in ui.panel.log_text(), timeout=5_000)
        qtbot.waitUntil(lambda: "(1/40)" in ui.panel.table.item(0, 3).text(), timeout=5_000)
        qtbot.waitUntil(lambda: "step 1/40" in ui.dashboard.status_label.text(), timeout=5_000)
        status = ui.dashboard.status_label.text()
        assert ("it/s" in status or "s/it" in status) and "ETA" in status and "elapsed" in status
        assert ui.dashboard.progress_bar.isVisible() and ui.dashboard.progress_bar.value() == 1
        log = ui.panel.log_text()
        assert "preparing data…" in log and "building model…" in log and "first step…" in log
    finally:
        hold.release.set()
    qtbot.waitUntil(lambda: record.state is JobState.DONE, timeout=60_000)


def test_phase_shows_before_any_step(ui, qtbot, monkeypatch, phantom_dataset, tmp_path):
    hold = _Hold(monkeypatch, lambda ev: isinstance(ev, PhaseEvent) and ev.phase == "building model")
    record = ui.start_training(tiny_config(phantom_dataset, tmp_path / "run", steps=5, val_every=0,
                                           sample_every=0, checkpoint_every=0))
    try:
        assert hold.reached.wait(60)
        qtbot.waitUntil(lambda: "building model…" in ui.dashboard.status_label.text(), timeout=5_000)
        qtbot.waitUntil(lambda: ui.panel.table.item(0, 3).text() == "building model…", timeout=5_000)
        assert ui.dashboard.progress_bar.maximum() == 0  # busy bar: nothing to count yet
    finally:
        hold.release.set()
    qtbot.waitUntil(lambda: record.state is JobState.DONE, timeout=60_000)
    qtbot.waitUntil(lambda: "100%" in ui.panel.table.item(0, 3).text(), timeout=5_000)


def test_slow_rate_reads_seconds_per_step() -> None:
    assert format_rate(1 / 87) == "87.0 s/it"
    assert format_rate(3.25) == "3.2 it/s"
    assert format_rate(0.0) == "? it/s"


def test_single_point_plots_show_a_marker(qtbot) -> None:
    dashboard = TrainingDashboard()
    qtbot.addWidget(dashboard)
    history = MetricHistory()
    history.add("step", 1, {"l1": 0.5, "lr_generator": 1e-3, "it_per_s": 0.01})
    history.add("val", 1, {"masked_psnr": 20.0})
    dashboard.set_run("one step", history)
    dashboard.refresh()
    for plot, key in (("loss_plot", "l1"), ("lr_plot", "generator"), ("speed_plot", "it/s"),
                      ("val_plot", "masked_psnr")):
        assert dashboard._curves[(plot, key)].opts["symbol"] == "o", (plot, key)
    history.add("step", 2, {"l1": 0.4, "lr_generator": 1e-3, "it_per_s": 0.01})
    dashboard.refresh()
    assert dashboard._curves[("loss_plot", "l1")].opts["symbol"] is None


def _double_click(qtbot, table, row: int) -> None:
    """Press, release, then double-click a row as a mouse does (the view needs the press)."""
    pos = table.visualItemRect(table.item(row, 1)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_evaluate_job_has_its_own_view_and_double_click_opens_its_results(ui, qtbot, monkeypatch, phantom_dataset, tmp_path):
    train = ui.start_training(tiny_config(phantom_dataset, tmp_path / "run", steps=3, val_every=0,
                                          sample_every=0, checkpoint_every=0))
    qtbot.waitUntil(lambda: train.state is JobState.DONE, timeout=60_000)
    out = tmp_path / "experiment"

    def task(ctx: JobContext) -> None:
        ctx.set_out_dir(out)
        out.mkdir()
        (out / "results.json").write_text(json.dumps({}))
        ctx.progress(1, 2)
        ctx.progress(2, 2)

    record = ui.manager.submit_task(JobKind.EVALUATE, "evaluate exp.toml", task)
    ui.panel.select(record.id)
    qtbot.waitUntil(lambda: record.state is JobState.DONE, timeout=30_000)
    qtbot.waitUntil(lambda: ui.task_view.open_button.isEnabled(), timeout=5_000)
    assert ui.views.currentWidget() is ui.task_view and not ui.dashboard.isVisible()
    assert ui.task_view.bar.value() == 2 and record.out_dir == str(out)
    opened = []
    monkeypatch.setattr(ui, "show_results", lambda path: opened.append(Path(path)))
    monkeypatch.setattr(ui, "open_folder", lambda path: opened.append(Path(path)))
    _double_click(qtbot, ui.panel.table, ui.panel._rows[record.id])
    assert opened == [out / "results.json"]
    # a finished training opens its run folder
    _double_click(qtbot, ui.panel.table, ui.panel._rows[train.id])
    assert opened[-1] == tmp_path / "run" and ui.views.currentWidget() is ui.dashboard
