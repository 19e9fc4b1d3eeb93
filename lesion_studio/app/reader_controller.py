"""Tools ▸ Reader study: read a study (full-screen reader mode), analyze it, build one.

`install_reader_study_ui(window)` adds the submenu to the main window's Tools menu. Reading
opens a separate top-level `ReaderView` per reader; analysis runs on a worker thread (plain
data in, plain data out) and opens the results dashboard; building runs the study builder as a
job in the window's job manager. The last study folder, reader id and key file are remembered
in `config_dir()/reader_study.json`.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QMainWindow, QMenu, QWidget

from lesion_studio.core.app_paths import config_dir
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.reader_study.session import ReaderSession, load_study


def remembered_path() -> Path:
    """Where the last study folder, reader id and key file are kept."""
    return config_dir() / "reader_study.json"


def load_remembered() -> dict[str, str]:
    try:
        data = json.loads(remembered_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def remember(**values: str) -> None:
    """Merge `values` into the remembered ones (a convenience: failures are ignored)."""
    data = load_remembered()
    data.update({k: str(v) for k, v in values.items()})
    try:
        remembered_path().write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError:
        pass


def run_analysis(study_dir: str | Path, key_path: str | Path) -> Any:
    """The results object of `core.reader_study.analysis` (worker thread; no Qt)."""
    from lesion_studio.core.reader_study.analysis import analyze_study

    return analyze_study(study_dir, key_path)


def _read_tables(path: str) -> dict[str, dict[str, Any]]:
    """The tables of a study TOML written before ({} when there is none or it is unreadable)."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def build_study_task(config_path: str | Path, force: bool = False):
    """A job task building the study of `config_path` (the engine of `lesion-studio study build`):
    cancellable, nothing is written until every case is made."""

    def task(ctx) -> None:
        from lesion_studio.core.reader_study.builder import StudyCancelled, build_study
        from lesion_studio.core.reader_study.config import load_study_config
        from lesion_studio.core.device import resolve_device
        from lesion_studio.models.study_engines import study_engine_factory

        config = load_study_config(config_path)
        ctx.set_out_dir(config.out_dir)
        ctx.log(f"study {config_path} -> {config.out_dir} (answer key: {config.key_path})")
        last = [""]

        def progress(done: int, total: int, message: str) -> None:
            ctx.progress(done, total)
            if message and message != last[0]:
                last[0] = message
                ctx.log(message)

        base = config.source_toml.parent if config.source_toml is not None else None
        try:
            factory = study_engine_factory(base, resolve_device(config.device))
            result = build_study(config, engine_factory=factory, progress=progress,
                                 cancel=lambda: ctx.cancelled, force=force)
        except StudyCancelled as exc:
            ctx.log(str(exc))
            return
        for line in result.summary().splitlines():
            ctx.log(line)
        ctx.log("hand the study folder to the readers; keep the answer key away from them")

    return task


class ReaderStudyUi(QObject):
    """Owns the reader windows, results dashboards and the analysis thread of one main window."""

    analysisFinished = Signal(object)  # the dashboard widget

    def __init__(self, window: QMainWindow, menu: QMenu) -> None:
        super().__init__(window)
        self.window = window
        self.reader_windows: list[QWidget] = []
        self.result_windows: list[QWidget] = []
        self.full_screen = True  # tests show the reader window normal
        self._analysis_ids = 0
        self._analysis_thread: threading.Thread | None = None
        # The worker only puts plain data here; a GUI-thread timer picks it up (no Qt off the GUI thread).
        self._analysis_results: queue.SimpleQueue = queue.SimpleQueue()
        self._analysis_poll = QTimer(self)
        self._analysis_poll.setInterval(50)
        self._analysis_poll.timeout.connect(self.poll_analysis)

        self.menu = menu.addMenu("Reader stud&y")
        self.read_action = QAction("&Read a study…", window)
        self.read_action.setStatusTip("Full-screen blinded reading: real or synthetic, one patch at a time")
        self.read_action.triggered.connect(self.open_read_dialog)
        self.analyze_action = QAction("&Analyze a study…", window)
        self.analyze_action.setStatusTip("Score the readers' sessions against the answer key")
        self.analyze_action.triggered.connect(self.open_analyze_dialog)
        self.build_action = QAction("&Build a study…", window)
        self.build_action.setStatusTip("Draw real and synthetic patches into a study folder and an answer key")
        self.build_action.triggered.connect(self.open_build_dialog)
        self.open_results_action = QAction("&Open saved results…", window)
        self.open_results_action.setStatusTip("Show a results.json of `lesion-studio study analyze` in the dashboard")
        self.open_results_action.triggered.connect(self.open_results_dialog)
        for action in (self.build_action, self.read_action, self.analyze_action, self.open_results_action):
            self.menu.addAction(action)

    # ------------------------------------------------------------------ dialogs (tests replace exec)
    def exec_dialog(self, dialog: QDialog) -> bool:
        """Run a modal dialog (tests replace this to fill it in and accept)."""
        return dialog.exec() == QDialog.DialogCode.Accepted

    def show_error(self, title: str, text: str) -> None:
        show = getattr(self.window, "show_error", None)
        if show is not None:
            show(title, text)
        else:  # pragma: no cover - the main window always has show_error
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.warning(self.window, title, text)

    def status(self, text: str, ms: int = 6000) -> None:
        self.window.statusBar().showMessage(text, ms)

    # ------------------------------------------------------------------ reading
    def open_read_dialog(self) -> QWidget | None:
        from lesion_studio.widgets.reader_study_dialogs import ReadStudyDialog

        last = load_remembered()
        dialog = ReadStudyDialog(last.get("study_dir", ""), last.get("reader", ""), self.window)
        try:
            if not self.exec_dialog(dialog):
                return None
            study_dir, reader = dialog.study_dir(), dialog.reader()
        finally:
            dialog.deleteLater()
        return self.open_reader(study_dir, reader)

    def open_reader(self, study_dir: str | Path, reader: str) -> QWidget | None:
        """Open reader mode for `reader` (resuming a saved session); None after an error."""
        from lesion_studio.core.reader_study.analysis import MACHINE_PREFIX
        from lesion_studio.widgets.reader_view import ReaderView

        if str(reader).startswith(MACHINE_PREFIX):  # the analysis would leave this person out of the pooled verdict
            self.show_error("Cannot open the reader study",
                            f"reader ids starting with {MACHINE_PREFIX!r} are kept for automatic readers; choose another")
            return None
        try:
            study = load_study(study_dir)
            session = ReaderSession.open(study, reader)
        except LesionStudioError as exc:
            self.show_error("Cannot open the reader study", str(exc))
            return None
        remember(study_dir=str(study.folder), reader=reader)
        for open_view in self.reader_windows:
            if open_view.isVisible() and open_view.session.path.resolve() == session.path.resolve():
                open_view.raise_()  # one window per session: two would overwrite each other's answers
                open_view.activateWindow()
                return open_view
        view = ReaderView(session)
        view.errorShown.connect(lambda text: self.status(text))
        view.paused.connect(lambda: self.status(f"Reading paused: {session.n_answered} of "
                                                f"{study.n_cases} answered, saved for {reader}"))
        self.reader_windows = [w for w in self.reader_windows if w.isVisible()] + [view]
        if self.full_screen:
            view.showFullScreen()
        else:
            view.show()
        view.raise_()
        view.activateWindow()
        return view

    # ------------------------------------------------------------------ analysis
    def open_analyze_dialog(self) -> bool:
        from lesion_studio.widgets.reader_study_dialogs import AnalyzeStudyDialog

        last = load_remembered()
        dialog = AnalyzeStudyDialog(last.get("analyze_dir", last.get("study_dir", "")), last.get("key_file", ""),
                                    self.window)
        try:
            if not self.exec_dialog(dialog):
                return False
            study_dir, key = dialog.study_dir(), dialog.key_file()
        finally:
            dialog.deleteLater()
        return self.analyze(study_dir, key)

    def analyze(self, study_dir: str | Path, key_path: str | Path) -> bool:
        """Start the analysis on a worker thread; the dashboard opens when it is done.
        False when one is still running."""
        if self.analysis_running():
            self.status("An analysis is still running")
            return False
        remember(analyze_dir=str(study_dir), key_file=str(key_path))
        self._analysis_ids += 1
        request, results = self._analysis_ids, self._analysis_results
        study_dir, key_path = str(study_dir), str(key_path)

        def work() -> None:  # worker thread: plain data in, plain data out, no Qt
            try:
                result, error = run_analysis(study_dir, key_path), None
            except Exception as exc:  # noqa: BLE001 - reported in the GUI, never kills the app
                result, error = None, exc
            results.put((request, result, error))

        self._analysis_thread = threading.Thread(target=work, name="reader-study-analysis", daemon=True)
        self._analysis_thread.start()
        self._analysis_poll.start()
        self.status(f"Analyzing {Path(study_dir).name}…", 0)
        return True

    def analysis_running(self) -> bool:
        return self._analysis_thread is not None and self._analysis_thread.is_alive()

    def wait_analysis(self, timeout_s: float = 60.0) -> bool:
        """Block until the analysis thread ends (tests and shutdown only)."""
        if self._analysis_thread is not None:
            self._analysis_thread.join(timeout_s)
        return not self.analysis_running()

    def poll_analysis(self) -> None:
        """GUI thread: show what the analysis thread has finished (timer tick)."""
        while True:
            try:
                request, result, error = self._analysis_results.get_nowait()
            except queue.Empty:
                return
            if request == self._analysis_ids:
                self._analysis_poll.stop()
                self._analysis_thread = None
                self._on_analysis_done(result, error)

    def _on_analysis_done(self, result: object, error: object) -> None:
        self.window.statusBar().clearMessage()
        if error is not None:
            if isinstance(error, LesionStudioError):
                text = str(error)
            else:
                text = f"unexpected error: {type(error).__name__}: {error}"
            self.show_error("Cannot analyze the study", text)
            return
        dashboard = self.show_results(result)
        if dashboard is not None:
            self.analysisFinished.emit(dashboard)

    def open_results_dialog(self) -> QWidget | None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.window, "Reader-study results", "", "Results (results.json *.json)")
        return self.open_results_file(path) if path else None

    def open_results_file(self, path: str | Path) -> QWidget | None:
        """The dashboard of a saved results.json (or its folder)."""
        from lesion_studio.widgets.reader_results import ReaderResultsDashboard

        dashboard = ReaderResultsDashboard()
        try:
            dashboard.load(path)
        except LesionStudioError as exc:
            dashboard.deleteLater()
            self.show_error("Cannot open the study results", str(exc))
            return None
        return self._show_dashboard(dashboard)

    def show_results(self, results: Any) -> QWidget | None:
        """Open the results dashboard (a separate window) for an analysis result."""
        from lesion_studio.widgets.reader_results import ReaderResultsDashboard

        try:
            dashboard = ReaderResultsDashboard()
            dashboard.set_results(results)
        except (LesionStudioError, KeyError, TypeError, ValueError) as exc:
            self.show_error("Cannot show the study results", str(exc))
            return None
        return self._show_dashboard(dashboard)

    def _show_dashboard(self, dashboard: QWidget) -> QWidget:
        dashboard.resize(1366, 860)
        dashboard.show()
        self.result_windows = [w for w in self.result_windows if w.isVisible()] + [dashboard]
        return dashboard

    # ------------------------------------------------------------------ building
    def open_build_dialog(self) -> object | None:
        """The Build dialog (prefilled from the last study TOML); queues the build when accepted."""
        from lesion_studio.widgets.reader_study_dialogs import BuildStudyDialog

        dialog = BuildStudyDialog(_read_tables(load_remembered().get("build_toml", "")), self.window)
        try:
            if not self.exec_dialog(dialog) or dialog.config_path is None:
                return None
            config_path, force = dialog.config_path, dialog.force
        finally:
            dialog.deleteLater()
        return self.start_build(config_path, force=force)

    def start_build(self, config_path: str | Path, *, force: bool = False) -> object | None:
        """Queue `lesion-studio study build CONFIG` in the window's job manager; returns its record."""
        from lesion_studio.core.jobs import JobKind

        jobs = getattr(self.window, "jobs_ui", None)
        if jobs is None:
            self.show_error("Cannot build the study", "this window has no job manager")
            return None
        remember(build_toml=str(config_path))
        record = jobs.manager.submit_task(
            JobKind.EXPORT, f"build study {Path(config_path).stem}", build_study_task(config_path, force),
            config={"config_path": str(config_path), "force": force},
        )
        jobs.show_dock()
        jobs.panel.select(record.id)
        return record


def install_reader_study_ui(window: QMainWindow) -> ReaderStudyUi:
    """Add Tools ▸ Reader study to `window` (once: a window that has it returns its own)."""
    existing = getattr(window, "reader_study_ui", None)
    if existing is not None:
        return existing
    menu = getattr(window, "tools_menu", None)
    if menu is None:
        menu = window.menuBar().addMenu("&Tools")
    ui = ReaderStudyUi(window, menu)
    window.reader_study_ui = ui
    return ui


__all__ = ["ReaderStudyUi", "install_reader_study_ui", "load_remembered", "remember", "remembered_path"]
