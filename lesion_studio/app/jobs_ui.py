"""Wires the job manager, the jobs panel and the training dashboard into a main window.

`install_jobs_ui(window)` adds a "Jobs" menu (New training…, Show jobs / dashboard), a dock
(hidden until used) holding the jobs panel and the dashboard, and a close guard: when jobs are
running, closing the window asks (`JobsUi.ask_cancel_running_jobs`, replaceable by tests),
then runs the window's own `closeEvent`, and only if that accepts cancels the jobs cleanly
(each training writes its cancel checkpoint) and waits for them.

UI updates are coalesced: job changes, log lines and samples are collected and applied by one
timer tick (`flush_interval_ms`), so a fast training stream never stalls the event loop.

Before a training, experiment or batch export is queued its output folder gets the checks the
job will make (`core.output_folder.preflight_output_folder`): a refused folder shows its reason;
one that only `--force` accepts on the command line (non-empty, not lesion-studio's) offers
"Use this folder anyway" (`ask_use_folder_anyway`, replaceable by tests), which starts the job
with force. A system folder or one another run holds offers nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QWidget,
)

from lesion_studio.app.job_manager import JobManager
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.jobs import JobKind, JobRecord, JobState
from lesion_studio.core.output_folder import FolderInUseError, OutputFolderRefused, preflight_output_folder
from lesion_studio.models.progress import SampleEvent, StepEvent
from lesion_studio.widgets.jobs_panel import JobsPanel
from lesion_studio.widgets.new_training_dialog import NewTrainingDialog
from lesion_studio.widgets.task_progress import TaskProgressView
from lesion_studio.widgets.training_dashboard import TrainingDashboard


class JobsUi(QObject):
    """Owns the `JobManager` of a window and the widgets that show it."""

    def __init__(self, window: QMainWindow, manager: JobManager | None = None,
                 flush_interval_ms: int = 200) -> None:
        super().__init__(window)
        self.window = window
        self.manager = manager if manager is not None else JobManager(self)
        self.panel = JobsPanel()
        self.dashboard = TrainingDashboard()
        self.task_view = TaskProgressView()  # evaluate and export jobs
        self.views = QStackedWidget()
        self.views.addWidget(self.dashboard)
        self.views.addWidget(self.task_view)
        self._shown_id = ""
        self._dirty: set[str] = set()
        self._pending_log: list[str] = []
        self._pending_sample: SampleEvent | None = None
        self._it_per_s: dict[str, float] = {}
        self._closing = False
        self.result_windows: list[QWidget] = []

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.panel)
        splitter.addWidget(self.views)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([480, 1000])
        self.dock = QDockWidget("Jobs and training", window)
        self.dock.setObjectName("jobsDock")
        self.dock.setWidget(splitter)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()

        self.new_training_action = QAction("&New training…", window)
        self.new_training_action.triggered.connect(self.open_new_training)
        self.show_action = QAction("Show &jobs / dashboard", window)
        self.show_action.setShortcut("Ctrl+J")
        self.show_action.triggered.connect(self.show_dock)
        self.menu = window.menuBar().addMenu("&Jobs")
        help_menu = getattr(window, "help_menu", None)
        if help_menu is not None:  # keep Help last
            window.menuBar().insertMenu(help_menu.menuAction(), self.menu)
        self.evaluate_action = QAction("Run &experiment (evaluate)…", window)
        self.evaluate_action.triggered.connect(self.open_evaluation)
        self.export_action = QAction("&Batch export…", window)
        self.export_action.triggered.connect(self.open_export)
        self.results_action = QAction("Open experiment &results…", window)
        self.results_action.triggered.connect(self.open_results)
        self.menu.addAction(self.new_training_action)
        self.menu.addAction(self.evaluate_action)
        self.menu.addAction(self.export_action)
        self.menu.addAction(self.results_action)
        self.menu.addSeparator()
        self.menu.addAction(self.show_action)
        self.menu.addSeparator()
        self.menu.addAction(self.dock.toggleViewAction())

        self.panel.newRequested.connect(self.open_new_training)
        self.panel.cancelRequested.connect(self.manager.cancel)
        self.panel.resumeRequested.connect(self.resume)
        self.panel.removeRequested.connect(self.manager.remove)
        self.panel.selectionChanged.connect(self.show_job)
        self.panel.openRequested.connect(self.open_job)
        self.task_view.openRequested.connect(self.open_job)
        self.panel.compareChanged.connect(self._on_compare)
        self.manager.jobAdded.connect(self._on_added)
        self.manager.jobChanged.connect(self._on_changed)
        self.manager.jobRemoved.connect(self._on_removed)
        self.manager.jobLog.connect(self._on_log)
        self.manager.jobEvent.connect(self._on_event)

        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(flush_interval_ms)
        self._flush_timer.timeout.connect(self.flush)
        self._flush_timer.start()
        self._tick_timer = QTimer(self)
        self._tick_timer.setInterval(1000)
        self._tick_timer.timeout.connect(self.tick)
        self._tick_timer.start()

        for record in self.manager.records:
            self.panel.set_record(record)
        window.installEventFilter(self)

    # ------------------------------------------------------------------ actions
    def show_dock(self) -> None:
        self.dock.show()
        self.dock.raise_()

    def exec_dialog(self, dialog: QDialog) -> bool:
        """Run a modal dialog (tests replace this to fill it in and accept)."""
        return dialog.exec() == QDialog.DialogCode.Accepted

    def open_new_training(self) -> JobRecord | None:
        """The New training dialog; starts the training it describes when accepted."""
        dialog = NewTrainingDialog(self.window)
        try:
            if not self.exec_dialog(dialog):
                return None
            config = dialog.config()
        finally:
            dialog.deleteLater()
        return self.start_training(config)

    def start_training(self, config: Any, title: str | None = None, *,
                       force: bool | None = None) -> JobRecord | None:
        """Queue a training of `config`; None when its run folder is refused (the reason shown).
        `force=None` checks the folder first and asks where `--force` would help."""
        if force is None:
            force = self.folder_force(config.run.out_dir, kind="train", key="run.out_dir")
            if force is None:
                return None
        record = self.manager.submit_training(config, title, force=force)
        self.show_dock()
        self.panel.select(record.id)
        return record

    def ask_open_path(self, title: str, file_filter: str) -> str:
        """A file chooser (tests replace this)."""
        path, _ = QFileDialog.getOpenFileName(self.window, title, "", file_filter)
        return path

    def open_evaluation(self) -> JobRecord | None:
        path = self.ask_open_path("Experiment config", "Experiment (*.toml)")
        return self.start_evaluation(path) if path else None

    def start_evaluation(self, config_path: str | Path, *, force: bool | None = None) -> JobRecord | None:
        """Queue `lesion-studio evaluate CONFIG` as a job (the same engine, cancellable); None
        when its results folder is refused (see `start_training` for `force`)."""
        from lesion_studio.app.task_jobs import evaluate_task

        if force is None:
            force = self._config_folder_force(config_path, "evaluate")
            if force is None:
                return None
        record = self.manager.submit_task(
            JobKind.EVALUATE, f"evaluate {Path(config_path).name}", evaluate_task(config_path, force),
            config={"config_path": str(config_path)},
        )
        self.show_dock()
        self.panel.select(record.id)
        return record

    def open_export(self) -> JobRecord | None:
        path = self.ask_open_path("Batch export config", "Batch export (*.toml)")
        return self.start_export(path) if path else None

    def start_export(self, config_path: str | Path, device: str = "cpu", *,
                     force: bool | None = None) -> JobRecord | None:
        """Queue `lesion-studio batch CONFIG` as a job; a cancelled export resumes when re-run.
        None when its output folder is refused (see `start_training` for `force`)."""
        from lesion_studio.app.task_jobs import batch_export_task

        if force is None:
            force = self._config_folder_force(config_path, "batch")
            if force is None:
                return None
        record = self.manager.submit_task(
            JobKind.EXPORT, f"export {Path(config_path).name}", batch_export_task(config_path, device, force),
            config={"config_path": str(config_path)},
        )
        self.show_dock()
        self.panel.select(record.id)
        return record

    # ------------------------------------------------------------------ output folders
    def folder_force(self, folder: str | Path, *, kind: str, key: str) -> bool | None:
        """May a `kind` job write into `folder`? False: yes, as it is; True: only with force, and
        the person chose "Use this folder anyway"; None: no (the reason was shown, or declined)."""
        try:
            preflight_output_folder(folder, kind=kind, key=key)
            return False
        except (OutputFolderRefused, FolderInUseError) as exc:
            refusal: Exception = exc
        except OSError as exc:  # an unreadable folder: say so, start nothing
            self.show_error("Cannot use this folder", f"{folder}: {exc}")
            return None
        if not getattr(refusal, "overridable", False):
            self.show_error("Cannot use this folder", str(refusal))
            return None
        if not self.ask_use_folder_anyway("Use this folder?", str(refusal)):
            return None
        try:  # checked again with force: the folder may have been taken meanwhile
            preflight_output_folder(folder, kind=kind, key=key, force=True)
        except (OutputFolderRefused, FolderInUseError, OSError) as exc:
            self.show_error("Cannot use this folder", str(exc))
            return None
        return True

    def _config_folder_force(self, config_path: str | Path, kind: str) -> bool | None:
        """`folder_force` for the output folder an experiment ("evaluate") or batch config names.
        A config that does not load is left to the job, which fails with its reason."""
        try:
            if kind == "evaluate":
                from lesion_studio.models.experiments import load_experiment_config

                folder, key = load_experiment_config(config_path).out_dir, "experiment.out_dir"
            else:
                from lesion_studio.core.export.config import load_batch_config

                folder, key = load_batch_config(config_path).output_dir, "output.dir"
        except (LesionStudioError, OSError, ValueError):
            return False
        return self.folder_force(folder, kind=kind, key=key)

    def ask_use_folder_anyway(self, title: str, text: str) -> bool:
        """A folder only `--force` accepts: True when the person chooses to use it (tests replace this)."""
        box = QMessageBox(QMessageBox.Icon.Warning, title,
                          f"{text}\n\nFiles already in the folder stay, unless the job writes a file of the "
                          "same name; lesion-studio marks the folder as its own.", QMessageBox.StandardButton.NoButton,
                          self.window)
        anyway = box.addButton("Use this folder anyway", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is anyway

    def open_results(self) -> QWidget | None:
        """Open an experiment's results.json in the experiment dashboard (a separate window)."""
        path = self.ask_open_path("Experiment results", "Experiment results (results.json *.json)")
        return self.show_results(path) if path else None

    def show_results(self, path: str | Path) -> QWidget | None:
        from lesion_studio.widgets.experiment_dashboard import open_experiment_dashboard

        try:
            dashboard = open_experiment_dashboard(path, parent=None)
        except (LesionStudioError, OSError, ValueError) as exc:
            self.show_error("Cannot open experiment", f"{path}: {exc}")
            return None
        dashboard.setWindowTitle(f"Experiment — {Path(path).parent.name}")
        dashboard.resize(1200, 800)
        dashboard.show()
        self.result_windows.append(dashboard)
        return dashboard

    def resume(self, job_id: str) -> None:
        try:
            self.manager.resume(job_id)
        except LesionStudioError as exc:
            self.show_error("Cannot resume", str(exc))

    def open_job(self, job_id: str) -> None:
        """Double-click: a finished evaluation opens its results, a finished export or training
        its output folder; a job still running is shown on the dashboard."""
        try:
            record = self.manager.record(job_id)
        except LesionStudioError:
            return
        self.show_dock()
        self.panel.select(job_id)
        if not record.state.finished or not record.out_dir:
            return
        results = Path(record.out_dir) / "results.json"
        if record.kind is JobKind.EVALUATE:
            if results.is_file():
                self.show_results(results)
            else:
                self.show_error("No results yet", f"{results} does not exist (the job {record.state.value}).")
        else:
            self.open_folder(record.out_dir)

    def open_folder(self, path: str | Path) -> None:
        """Show a folder in the desktop's file manager (tests replace this)."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def show_error(self, title: str, text: str) -> None:
        """Message box (tests replace this)."""
        QMessageBox.warning(self.window, title, text)

    def ask_cancel_running_jobs(self, n_running: int) -> bool:
        """Closing with jobs running: True cancels them (each writes a checkpoint) and closes."""
        answer = QMessageBox.question(
            self.window, "Jobs are running",
            f"{n_running} job(s) are still running. Cancel them and close? "
            "Trainings write a checkpoint and can be resumed later.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------------------ showing a job
    def show_job(self, job_id: str) -> None:
        """Dashboard, log and error of one job ("" clears)."""
        self._shown_id = job_id
        self._pending_log.clear()
        self._pending_sample = None
        if not job_id:
            self.dashboard.set_run("", None)
            self.panel.set_log([])
            return
        record = self.manager.record(job_id)
        if record.kind is JobKind.TRAIN:
            self.views.setCurrentWidget(self.dashboard)
            self.dashboard.set_run(record.title, self.manager.metrics(job_id))
        else:  # its own view: a training's charts and axes say nothing about an evaluation
            self.views.setCurrentWidget(self.task_view)
            self.dashboard.set_run("", None)
        self.panel.set_log(self.manager.log_lines(job_id))
        self._update_progress(record)

    def _update_progress(self, record: JobRecord) -> None:
        if record.kind is not JobKind.TRAIN:
            self.task_view.set_record(record)
            return
        running = record.state in (JobState.RUNNING, JobState.CANCELLING)
        self.dashboard.set_progress(record.step, record.total_steps, self._it_per_s.get(record.id),
                                    record.eta_s, record.running_elapsed_s(),
                                    phase=record.phase if running else "", running=running)
        self.dashboard.set_selection(record.selection)

    def tick(self) -> None:
        """Once a second: elapsed times of running jobs in the table and on the shown view."""
        self.panel.tick()
        if not self._shown_id:
            return
        try:
            record = self.manager.record(self._shown_id)
        except LesionStudioError:
            return
        if record.state in (JobState.RUNNING, JobState.CANCELLING):
            self._update_progress(record)

    def _on_compare(self, ids: list[str]) -> None:
        runs = [(self.manager.record(i).title, self.manager.metrics(i)) for i in ids if i != self._shown_id]
        self.dashboard.set_overlays(runs)

    # ------------------------------------------------------------------ manager signals
    def _on_added(self, job_id: str) -> None:
        self.panel.set_record(self.manager.record(job_id))

    def _on_changed(self, job_id: str) -> None:
        self._dirty.add(job_id)

    def _on_removed(self, job_id: str) -> None:
        self.panel.remove_record(job_id)
        self._dirty.discard(job_id)

    def _on_log(self, job_id: str, line: str) -> None:
        if job_id == self._shown_id:
            self._pending_log.append(line)

    def _on_event(self, job_id: str, event: object) -> None:
        if isinstance(event, StepEvent):
            self._it_per_s[job_id] = event.it_per_s
        elif isinstance(event, SampleEvent) and job_id == self._shown_id:
            self._pending_sample = event

    def flush(self) -> None:
        """Apply collected changes (one timer tick): rows, log lines, samples, progress."""
        dirty, self._dirty = self._dirty, set()
        for job_id in dirty:
            try:
                record = self.manager.record(job_id)
            except LesionStudioError:
                continue
            self.panel.set_record(record)
            if job_id == self._shown_id:
                self._update_progress(record)
        if self._pending_log:
            self.panel.append_log(self._pending_log)
            self._pending_log = []
        if self._pending_sample is not None:
            sample, self._pending_sample = self._pending_sample, None
            self.dashboard.show_samples(sample.step, sample.images, sample.titles)

    # ------------------------------------------------------------------ closing
    def confirm_close(self) -> bool:
        """Ask when jobs run; True when the window may close (jobs are not cancelled yet)."""
        running = self.manager.active_jobs()
        return not running or self.ask_cancel_running_jobs(len(running))

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel every job and wait for it (checkpoints written)."""
        self._flush_timer.stop()
        self._tick_timer.stop()
        return self.manager.shutdown(timeout_ms)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.window and event.type() == QEvent.Type.Close and not self._closing:
            if not self.manager.active_jobs():
                return False
            if not self.confirm_close():
                event.ignore()
                return True
            self._closing = True
            try:
                self.window.closeEvent(event)  # the window's own checks (unsaved annotations)
            finally:
                self._closing = False
            if event.isAccepted():
                self.shutdown()
            return True
        return super().eventFilter(watched, event)


def install_jobs_ui(window: QMainWindow, manager: JobManager | None = None) -> JobsUi:
    """Add the Jobs menu, the jobs/dashboard dock and the close guard to `window` (once:
    a window that has them already returns its own unless another manager is given)."""
    existing = getattr(window, "jobs_ui", None)
    if existing is not None and manager is None:
        return existing
    ui = JobsUi(window, manager)
    window.jobs_ui = ui
    return ui


__all__ = ["JobsUi", "install_jobs_ui"]
