"""The main window: start page, viewer, menus, toolbar, status bar and file opening."""

from __future__ import annotations

import threading
from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from lesion_studio import __version__
from lesion_studio.app.annotation_controller import AnnotationController
from lesion_studio.app.synthesis_controller import SynthesisController
from lesion_studio.app.image_loader import ImageLoader
from lesion_studio.app.viewer_controller import ViewerController
from lesion_studio.core.annotation import AnnotationDocument
from lesion_studio.core.annotation.autosave import AutosaveStore, Recovery
from lesion_studio.core.annotation.mask_io import export_layer, import_mask
from lesion_studio.core.annotation.session import SessionState, load_session, save_session
from lesion_studio.core.errors import ImageLoadError, LesionStudioError, SeriesChoiceError
from lesion_studio.core.image import MedicalImage
from lesion_studio.core.imageio import FILE_PATTERNS, SeriesInfo
from lesion_studio.core.recent_files import RecentFiles
from lesion_studio.core.sample_data import DEMO_IMAGES, sample_file
from lesion_studio.core.tool_state import ToolState
from lesion_studio.core.view_state import ViewState
from lesion_studio.widgets.annotation_panel import AnnotationPanel
from lesion_studio.widgets.image_canvas import ImageCanvas
from lesion_studio.widgets.image_info import ImageInfoPanel
from lesion_studio.widgets.lesion_table import LesionTable
from lesion_studio.widgets.shortcuts_dialog import ShortcutsDialog
from lesion_studio.widgets.synthesis_panel import SynthesisPanel
from lesion_studio.widgets.slice_navigator import SliceNavigator
from lesion_studio.widgets.start_page import StartPage
from lesion_studio.widgets.window_level import WindowLevelPanel

ICON_COLOR = "#d7dde5"
AUTOSAVE_INTERVAL_MS = 5_000  # recovery written within 10 s of a change
MASK_FILTER = "Masks (*.png *.nii.gz *.nii);;PNG (*.png);;NIfTI (*.nii.gz *.nii)"
SESSION_FILTER = "lesion-studio session (*.json)"


def _file_dialog_filter() -> str:
    every = " ".join(p for patterns in FILE_PATTERNS.values() for p in patterns if p != "*")
    parts = [f"Medical images ({every})"]
    parts += [f"{name} ({' '.join(patterns)})" for name, patterns in FILE_PATTERNS.items()]
    parts.append("All files (*)")
    return ";;".join(parts)


#: Who the shipped data come from (CC BY requires the credit wherever the data are used).
DATA_ATTRIBUTION_HTML = (
    "<b>Real-nodule library</b>: CT nodules from the LIDC-IDRI database (CC BY 3.0) via LUNA16 "
    "(CC BY 4.0) and the NODE21 generation baseline (Apache-2.0). Armato SG III et al., Med Phys "
    "38(2):915-931, 2011; Armato SG III et al., TCIA 2015, doi:10.7937/K9/TCIA.2015.LO9QL9SX; "
    "Clark K et al., J Digit Imaging 2013; Setio AAA et al., Med Image Anal 2017; Sogancioglu E "
    "et al., NODE21, IEEE TMI 2024. The authors acknowledge the National Cancer Institute and the "
    "Foundation for the National Institutes of Health and their critical role in the creation of "
    "the free publicly available LIDC/IDRI Database. Full text: resources/nodules/ATTRIBUTION.md."
    "<br><br><b>Real-stone library</b>: kidney stones from the TEZ_ROI_AUG coronal CT slices (Roboflow, "
    "CC BY 4.0 as declared by the uploader), images like Yildirim et al., Comput Biol Med 135:104569, "
    "2021. Full text: resources/stones/ATTRIBUTION.md."
)


class MainWindow(QMainWindow):
    """Top-level window. Domain state lives in `self.state`; widgets only render it."""

    def __init__(
        self,
        device: str = "cpu",
        recent: RecentFiles | None = None,
        autosave: AutosaveStore | None = None,
        offer_recovery: bool = True,
    ) -> None:
        super().__init__()
        from lesion_studio.app.gc_guard import install_gc_guard

        install_gc_guard()  # garbage (and the Qt objects in it) is collected on this thread only
        self.setWindowTitle("lesion-studio")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.device = device
        self.recent = recent if recent is not None else RecentFiles()
        self.state = ViewState()
        self.tools = ToolState()
        self.autosave = autosave if autosave is not None else AutosaveStore()
        self.loader = ImageLoader(self)
        self._pending_session: tuple[AnnotationDocument, SessionState] | None = None
        self._pending_is_recovery = False
        self._autosave_thread: threading.Thread | None = None
        self._autosave_error: str | None = None
        self._saved_revision: tuple[str, int] | None = None
        self.last_error: str | None = None
        self._error_box: QMessageBox | None = None
        self._pending_path: Path | None = None
        self._session_path: Path | None = None  # where Save writes without asking again
        self._pending_session_path: Path | None = None

        self._build_widgets()
        self.controller = ViewerController(
            self.state, self.canvas, self.window_panel, self.slice_navigator, self.info_panel, self
        )
        self.annotations = AnnotationController(
            self.state, self.tools, self.canvas, self.annotation_panel, self.lesion_table, self
        )
        self.annotations.message.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.synthesis = SynthesisController(
            self.state, self.tools, self.canvas, self.synthesis_panel, lambda: self.annotations.doc, device, self
        )
        self.synthesis.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        # The side tab and the tool are one state (ToolSettings.panel): each follows the other.
        self.side_tabs.currentChanged.connect(self._on_side_tab_changed)
        self.tools.changed.connect(self._on_tool_panel_changed)
        self.synthesis_panel.addModelRequested.connect(self.add_checkpoint_dialog)
        self.synthesis_panel.loadBankRequested.connect(self.load_bank_dialog)
        self._build_actions()
        self._build_menus_and_toolbar()
        self._build_status_bar()

        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.loader.busyChanged.connect(self._on_busy)
        self.controller.cursorTextChanged.connect(self._on_cursor_text)
        self.state.changed.connect(self._on_state_changed)

        self.start_page.set_demos(DEMO_IMAGES)
        self._refresh_recent()
        self.show_start_page()

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_INTERVAL_MS)
        self.autosave_timer.timeout.connect(self.autosave_now)
        self.autosave_timer.start()
        if offer_recovery:
            QTimer.singleShot(0, self.offer_recovery)
        from lesion_studio.app.jobs_ui import install_jobs_ui

        self.jobs_ui = install_jobs_ui(self)  # Jobs menu and dock; asks before closing with running jobs
        from lesion_studio.app.reader_controller import install_reader_study_ui

        self.reader_study_ui = install_reader_study_ui(self)  # Tools ▸ Reader study

    # ------------------------------------------------------------------ construction

    def _build_widgets(self) -> None:
        self.start_page = StartPage()
        self.start_page.openFileRequested.connect(self.open_file_dialog)
        self.start_page.openFolderRequested.connect(self.open_folder_dialog)
        self.start_page.recentChosen.connect(self.open_path)
        self.start_page.demoChosen.connect(self.open_demo)

        self.canvas = ImageCanvas()
        self.slice_navigator = SliceNavigator()
        self.window_panel = WindowLevelPanel()
        self.info_panel = ImageInfoPanel()
        self.annotation_panel = AnnotationPanel()
        self.lesion_table = LesionTable()

        image_area = QWidget()
        image_layout = QVBoxLayout(image_area)
        image_layout.setContentsMargins(0, 0, 0, 0)
        image_layout.setSpacing(0)
        image_layout.addWidget(self.canvas, 1)
        image_layout.addWidget(self.slice_navigator)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(image_area)
        left.addWidget(self.lesion_table)
        left.setStretchFactor(0, 1)
        left.setSizes([700, 160])

        self.synthesis_panel = SynthesisPanel()
        annotate_tab = QWidget()
        annotate_layout = QVBoxLayout(annotate_tab)
        annotate_layout.addWidget(self.annotation_panel)
        annotate_layout.addWidget(self.window_panel)
        annotate_layout.addWidget(self.info_panel)
        annotate_layout.addStretch(1)
        synth_tab = QWidget()
        synth_layout = QVBoxLayout(synth_tab)
        for tab_layout in (annotate_layout, synth_layout):
            tab_layout.setContentsMargins(4, 4, 4, 4)
        synth_layout.addWidget(self.synthesis_panel)
        synth_layout.addStretch(1)
        self.side_tabs = QTabWidget()
        self.panel_tabs: dict[str, int] = {}  # ToolSettings.panel -> tab index
        for widget, title in ((annotate_tab, "Annotate"), (synth_tab, "Synthesize")):
            scroll = QScrollArea()
            scroll.setWidget(widget)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            self.panel_tabs[title.lower()] = self.side_tabs.addTab(scroll, title)
        side = self.side_tabs
        side.setMinimumWidth(340)  # the Synthesize panel fits without horizontal scrolling
        side.setMaximumWidth(440)

        self.viewer_page = QSplitter(Qt.Orientation.Horizontal)
        self.viewer_page.addWidget(left)
        self.viewer_page.addWidget(side)
        self.viewer_page.setStretchFactor(0, 1)
        self.viewer_page.setSizes([1100, 300])

        self.pages = QStackedWidget()
        self.pages.addWidget(self.start_page)
        self.pages.addWidget(self.viewer_page)
        self.pages.currentChanged.connect(self._on_page_changed)
        self.setCentralWidget(self.pages)

    def _action(self, text: str, icon: str | None, slot, shortcut=None, tip: str | None = None) -> QAction:
        """One window-wide action with its text, optional icon, shortcuts and tip."""
        # QAction(None, text, parent) drops the text with PySide6 6.12: never pass a None icon.
        action = QAction(text, self)
        if icon:
            action.setIcon(qta.icon(icon, color=ICON_COLOR))
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open file…", "fa5s.file-medical", self.open_file_dialog, QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action("Open DICOM &folder…", "fa5s.folder-open", self.open_folder_dialog, "Ctrl+Shift+O")
        self.close_action = self._action("&Close image", None, self.close_image, QKeySequence.StandardKey.Close)
        self.quit_action = self._action("&Quit", "fa5s.sign-out-alt", self.close, QKeySequence.StandardKey.Quit)
        self.home_action = self._action("Start page", "fa5s.home", self.show_start_page, tip="Back to the start page")
        self.fit_action = self._action("&Fit to window", "fa5s.expand", self.canvas.fit, ["Ctrl+0", "Home"], "Show the whole image")
        self.one_to_one_action = self._action("&1:1 pixels", "fa5s.search", self.canvas.one_to_one, "Ctrl+1", "One image pixel per screen pixel")
        self.reset_window_action = self._action("&Reset window/level", "fa5s.adjust", self.state.reset_window, "Ctrl+R", "Back to the image's own window")
        self.next_slice_action = self._action("Next slice", None, lambda: self.state.step_slice(1), ["PgDown"])
        self.prev_slice_action = self._action("Previous slice", None, lambda: self.state.step_slice(-1), ["PgUp"])
        self.about_action = self._action("&About lesion-studio", "fa5s.info-circle", self.show_about)
        self.shortcuts_action = self._action("&Shortcuts…", "fa5s.keyboard", self.show_shortcuts, "F1")

        a = self.annotations
        self.undo_action = self._action("&Undo", "fa5s.undo", self.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("&Redo", "fa5s.redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        self.delete_lesion_action = self._action("&Delete selected lesion", "fa5s.trash-alt", lambda: a.delete_lesion(), "Del")
        self.tool_actions = {
            name: self._action(text, None, lambda _=False, n=name: a.set_tool(n), key)
            for name, text, key in (
                ("brush", "&Brush", "B"), ("eraser", "&Eraser", "E"), ("fill", "&Fill", "F"),
                ("lasso", "&Lasso", "L"), ("select", "&Select lesion", "S"), ("navigate", "&Navigate", "Esc"),
                ("place", "&Place synthetic lesion", "P"),
            )
        }
        self.before_after_action = self._action("Show original / synthetic", None, self._toggle_before_after, "Space")
        self.export_image_action = self._action("&Export current image…", "fa5s.file-export", self.export_image_dialog)
        self.grow_action = self._action("Larger brush", None, a.grow_brush, "]")
        self.shrink_action = self._action("Smaller brush", None, a.shrink_brush, "[")
        self.toggle_overlay_action = self._action("&Hide/show masks", None, self.toggle_overlays, "H")
        self.class_actions = [
            self._action(f"Class {i + 1}", None, lambda _=False, i=i: a.set_class_by_index(i), str(i + 1))
            for i in range(9)
        ]
        self.save_session_action = self._action("&Save session…", "fa5s.save", self.save_session_dialog, QKeySequence.StandardKey.Save)
        self.open_session_action = self._action("Open s&ession…", None, self.open_session_dialog)
        self.save_mask_action = self._action("Save &mask as…", None, lambda: self.save_mask_dialog("labels"))
        self.import_mask_action = self._action("&Import ground-truth mask…", None, lambda: self.import_mask_dialog("labels"))
        self.save_location_action = self._action("Save &location map as…", None, lambda: self.save_mask_dialog("location"))
        self.import_location_action = self._action("Import location map…", None, lambda: self.import_mask_dialog("location"))

    def _build_menus_and_toolbar(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.demo_menu = file_menu.addMenu(qta.icon("fa5s.x-ray", color=ICON_COLOR), "Open &demo image")
        for label, name in DEMO_IMAGES.items():
            action = self.demo_menu.addAction(label)
            action.triggered.connect(lambda _=False, n=name: self.open_demo(n))
        file_menu.addSeparator()
        for action in (self.open_session_action, self.save_session_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        for action in (self.save_mask_action, self.import_mask_action, self.save_location_action, self.import_location_action):
            file_menu.addAction(action)
        file_menu.addAction(self.export_image_action)
        file_menu.addSeparator()
        file_menu.addAction(self.close_action)
        file_menu.addAction(self.quit_action)

        edit_menu = self.menuBar().addMenu("&Edit")
        for action in (self.undo_action, self.redo_action, self.delete_lesion_action):
            edit_menu.addAction(action)
        self.tools_menu = tools_menu = self.menuBar().addMenu("&Tools")
        for action in self.tool_actions.values():
            tools_menu.addAction(action)
        tools_menu.addSeparator()
        for action in (self.shrink_action, self.grow_action, self.toggle_overlay_action):
            tools_menu.addAction(action)

        view_menu = self.menuBar().addMenu("&View")
        for action in (self.home_action, self.fit_action, self.one_to_one_action, self.reset_window_action):
            view_menu.addAction(action)
        view_menu.addSeparator()
        view_menu.addAction(self.prev_slice_action)
        view_menu.addAction(self.next_slice_action)

        self.help_menu = self.menuBar().addMenu("&Help")
        self.help_menu.addAction(self.shortcuts_action)
        self.help_menu.addAction(self.about_action)

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        for action in (self.home_action, self.open_action, self.open_folder_action):
            toolbar.addAction(action)
        toolbar.addAction(self.save_session_action)
        toolbar.addSeparator()
        for action in (self.fit_action, self.one_to_one_action, self.reset_window_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.undo_action)
        toolbar.addAction(self.redo_action)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.pixel_label = QLabel()
        self.mm_label = QLabel()
        self.value_label = QLabel()
        self.device_label = QLabel(f"device: {self.device}")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # indeterminate
        self.busy_bar.setMaximumWidth(140)
        self.busy_bar.setVisible(False)
        for widget in (self.pixel_label, self.mm_label, self.value_label):
            bar.addWidget(widget)
        bar.addPermanentWidget(self.busy_bar)
        bar.addPermanentWidget(self.device_label)

    # ------------------------------------------------------------------ pages

    def show_start_page(self) -> None:
        self._refresh_recent()
        self.pages.setCurrentWidget(self.start_page)

    def show_viewer(self) -> None:
        self.pages.setCurrentWidget(self.viewer_page)

    def _on_page_changed(self, _index: int) -> None:
        """A hidden start page must not lend the viewer its minimum height (a stack takes the
        largest of its pages'): at 768 px the jobs dock could not grow past 300 px."""
        policy = QSizePolicy.Policy.Preferred if self.pages.currentWidget() is self.start_page else QSizePolicy.Policy.Ignored
        self.start_page.setSizePolicy(policy, policy)

    def _refresh_recent(self) -> None:
        entries = self.recent.entries()
        self.start_page.set_recent(entries)
        self.recent_menu.clear()
        for path in entries:
            action = self.recent_menu.addAction(str(path))
            action.triggered.connect(lambda _=False, p=str(path): self.open_path(p))
        self.recent_menu.setEnabled(bool(entries))

    # ------------------------------------------------------------------ opening

    def open_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open image", "", _file_dialog_filter())
        if paths:
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if folder:
            self.open_path(folder)

    def open_paths(self, paths: list[str] | list[Path]) -> None:
        """Open what the user gave: one file/folder, or several files of one series."""
        paths = [Path(p) for p in paths]
        if not paths or not self.confirm_discard_changes():
            return
        if len(paths) == 1:
            self._load(paths[0])
            return
        folders = {p.parent for p in paths}
        if len(folders) == 1 and all(p.is_file() for p in paths):
            self._load(next(iter(folders)))  # several slices picked: open their series
        else:
            self._load(paths[0])
            self.statusBar().showMessage(f"Opened the first of {len(paths)} paths", 5000)

    def open_demo(self, file_name: str) -> None:
        try:
            path = sample_file(file_name)
        except FileNotFoundError as exc:
            self.show_error("Demo image missing", str(exc))
            return
        self.open_path(path)

    def open_path(self, path: str | Path, series_uid: str | None = None) -> None:
        """Open an image in place of the current one, after asking about unsaved work."""
        if not self.confirm_discard_changes():
            return
        self._load(path, series_uid)

    def _load(self, path: str | Path, series_uid: str | None = None) -> None:
        """Start loading off the UI thread; the result arrives in `_on_loaded`."""
        self._pending_path = Path(path)
        self.statusBar().showMessage(f"Loading {Path(path).name}…")
        self.loader.load(path, series_uid)

    def close_image(self) -> None:
        """Close the image (asking about unsaved work) and go back to the start page."""
        if not self.confirm_discard_changes():
            return
        self._session_path = None
        self.state.set_image(None)
        self.autosave.discard()
        self.show_start_page()

    def _on_loaded(self, image: MedicalImage) -> None:
        self.state.set_image(image)
        recovered = False
        self._session_path, self._pending_session_path = self._pending_session_path, None
        if self._pending_session is not None:
            doc, session = self._pending_session
            recovered, self._pending_is_recovery = self._pending_is_recovery, False
            self._pending_session = None
            self._apply_session(image, doc, session)
        self._mark_clean()
        if recovered:
            self._saved_revision = None  # recovered work is not saved anywhere yet
            self.autosave.save(self.document, self.session_state(), force=True)
        self.recent.add(image.source.path)
        self._refresh_recent()
        self.show_viewer()
        self.canvas.fit()
        self.setWindowTitle(f"{image.source.path.name} — lesion-studio")
        self.statusBar().showMessage(f"Opened {image.source.path}", 5000)

    def _on_failed(self, error: ImageLoadError) -> None:
        self.statusBar().clearMessage()
        if isinstance(error, SeriesChoiceError):
            uid = self.choose_series(error.series)
            if uid is not None:
                self._load(error.path, series_uid=uid)
            return
        self._pending_session, self._pending_session_path, self._pending_is_recovery = None, None, False
        self.show_error("Cannot open image", str(error))

    def choose_series(self, series: list[SeriesInfo]) -> str | None:
        """Ask which series to open (tests replace this to answer without a dialog)."""
        labels = [s.label() for s in series]
        label, ok = QInputDialog.getItem(self, "Choose a series", "This folder holds several series:", labels, 0, False)
        return series[labels.index(label)].series_uid if ok else None

    def show_error(self, title: str, text: str) -> None:
        """A window-modal message that does not block the event loop."""
        self.last_error = text
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self._error_box = box

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About lesion-studio",
            f"<b>lesion-studio {__version__}</b><br>Paint, sample and synthesize lesions in "
            f"radiographs and CT.<br>Models run on: {self.device}<br><br>{DATA_ATTRIBUTION_HTML}",
        )

    # ------------------------------------------------------------------ status

    def _on_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)
        if busy:
            self.setCursor(Qt.CursorShape.BusyCursor)
        else:
            self.unsetCursor()

    def _on_cursor_text(self, pixel: str, mm: str, value: str) -> None:
        self.pixel_label.setText(pixel)
        self.mm_label.setText(mm)
        self.value_label.setText(value)

    def _on_state_changed(self, kind: str) -> None:
        if kind == "image" and self.state.image is None:
            self.setWindowTitle("lesion-studio")
            self._on_cursor_text("", "", "")

    # ------------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [QUrl(u).toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.confirm_discard_changes():
            event.ignore()
            return
        self.autosave_timer.stop()
        if self._autosave_thread is not None:
            self._autosave_thread.join()
        self.synthesis.shutdown()
        self.loader.wait(5_000)
        self.autosave.discard()  # a clean exit leaves no recovery behind
        super().closeEvent(event)

    # ------------------------------------------------------------------ annotations: files

    @property
    def document(self) -> AnnotationDocument | None:
        return self.annotations.doc

    def session_state(self) -> SessionState:
        image = self.state.image
        return SessionState(
            image_path=None if image is None else str(image.source.path),
            window=self.state.window,
            current_slice=self.state.slice_index,
        )

    def has_unsaved_changes(self) -> bool:
        doc = self.document
        if doc is None:
            return False
        if self._saved_revision is None:
            return bool(doc.lesion_ids) or bool(doc.location.any())
        return (doc.uid, doc.revision) != self._saved_revision

    def _mark_clean(self) -> None:
        doc = self.document
        self._saved_revision = None if doc is None else (doc.uid, doc.revision)

    def confirm_discard_changes(self) -> bool:
        """Before unsaved work is dropped: Save / Discard / Cancel. True when it may go ahead."""
        if not self.has_unsaved_changes():
            return True
        answer = self.ask_unsaved_changes()
        if answer == "save":
            return self.save_session_interactive() is not None
        return answer == "discard"

    def ask_unsaved_changes(self) -> str:
        """"save", "discard" or "cancel" (tests replace this)."""
        doc = self.document
        n = 0 if doc is None else len(doc.lesion_ids)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Unsaved annotations",
            f"This image has unsaved changes ({n} lesion(s), including accepted syntheses). "
            "Save them as a session first?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save", QMessageBox.StandardButton.Discard: "discard"}.get(
            QMessageBox.StandardButton(answer), "cancel"
        )

    def ask_session_path(self) -> str:
        """A session file chooser; "" when cancelled (tests replace this)."""
        path, _ = QFileDialog.getSaveFileName(self, "Save session", "", SESSION_FILTER)
        return path

    def save_session_interactive(self) -> Path | None:
        """Save to the session already used, or ask where; None when cancelled or failed."""
        path: str | Path | None = self._session_path
        if path is None:
            path = self.ask_session_path()
            if not path:
                return None
            path = path if str(path).lower().endswith(".json") else str(path) + ".json"
        return self.save_session(path)

    def save_session(self, path: str | Path) -> Path | None:
        doc = self.document
        if doc is None:
            self.show_error("Nothing to save", "Open an image first.")
            return None
        try:
            written = save_session(path, doc, self.session_state())
        except (LesionStudioError, OSError) as exc:
            self.show_error("Cannot save session", f"{path}: {exc}")
            return None
        self._mark_clean()
        self._session_path = Path(written)
        self.statusBar().showMessage(f"Saved session {written}", 5000)
        return written

    def open_session(self, path: str | Path) -> None:
        """Load masks and view state from a session file, then (re)open its image."""
        try:
            doc, session = load_session(path)
        except (LesionStudioError, OSError, ValueError) as exc:
            self.show_error("Cannot open session", str(exc))
            return
        if not session.image_path:
            self.show_error("Cannot open session", f"{path}: the session names no image")
            return
        if not self.confirm_discard_changes():
            return
        self._pending_session = (doc, session)
        self._pending_session_path = Path(path)
        self._load(session.image_path)

    def _apply_session(self, image: MedicalImage, doc: AnnotationDocument, session: SessionState) -> None:
        if tuple(doc.shape) != tuple(image.shape):
            self.show_error(
                "Session does not fit the image",
                f"{image.source.path}: the masks are {doc.shape} but the image is {image.shape}",
            )
            return
        self.annotations.set_document(doc)
        if session.window is not None:
            self.state.set_window(session.window)
        self.state.set_slice(session.current_slice)

    def save_mask(self, path: str | Path, layer: str = "labels") -> Path | None:
        doc = self.document
        if doc is None:
            self.show_error("Nothing to save", "Open an image first.")
            return None
        try:
            written = export_layer(doc, path, layer)
        except (LesionStudioError, OSError, ValueError) as exc:
            self.show_error("Cannot save mask", f"{path}: {exc}")
            return None
        self.statusBar().showMessage(f"Saved {layer} to {written}", 5000)
        return written

    def import_mask(self, path: str | Path, layer: str = "labels") -> bool:
        doc = self.document
        if doc is None:
            self.show_error("No image", "Open the image the mask belongs to first.")
            return False
        try:
            ids = import_mask(doc, path, layer=layer)
        except (LesionStudioError, OSError, ValueError) as exc:
            self.show_error("Cannot import mask", str(exc))
            return False
        what = "location map" if layer == "location" else f"{len(ids)} lesion(s)"
        self.statusBar().showMessage(f"Imported {what} from {Path(path).name}", 5000)
        return True

    def save_session_dialog(self) -> None:
        path = self.ask_session_path()
        if path:
            self.save_session(path if path.lower().endswith(".json") else path + ".json")

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", SESSION_FILTER)
        if path:
            self.open_session(path)

    def save_mask_dialog(self, layer: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save mask", "", MASK_FILTER)
        if path:
            self.save_mask(path, layer)

    def import_mask_dialog(self, layer: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import mask", "", MASK_FILTER)
        if path:
            self.import_mask(path, layer)

    def undo(self) -> None:
        """Undo one step; a synthesis preview made before it no longer fits and is dropped."""
        self._drop_stale_preview()
        self.annotations.undo()

    def redo(self) -> None:
        """Redo one step (drops a pending synthesis preview like undo)."""
        self._drop_stale_preview()
        self.annotations.redo()

    def _drop_stale_preview(self) -> None:
        if self.synthesis.preview is not None:
            self.synthesis.reject()

    def toggle_overlays(self) -> None:
        """H: masks and the synthesis preview's outline, crop box and split line together (the
        synthesis controller follows the masks' visibility)."""
        self.annotations.toggle_overlays()

    def _on_side_tab_changed(self, index: int) -> None:
        panel = next((name for name, i in self.panel_tabs.items() if i == index), None)
        if panel is not None:
            self.tools.update(panel=panel)

    def _on_tool_panel_changed(self, names: set[str]) -> None:
        if "panel" in names:
            self.side_tabs.setCurrentIndex(self.panel_tabs[self.tools.settings.panel])

    def _toggle_before_after(self) -> None:
        if self.synthesis.preview is not None:
            self.synthesis.toggle_before_after()

    def add_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add checkpoint", "", "lesion-studio checkpoint (*.json *.safetensors)")
        if path:
            self.synthesis.add_checkpoint(path)

    def load_bank_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load mask bank", "", "Mask bank (*.npz)")
        if path:
            self.synthesis.load_bank(path)

    def export_image_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export current image", "", "PNG (*.png);;NIfTI (*.nii.gz)")
        if path:
            self.export_current_image(path)

    def export_current_image(self, path: str | Path) -> list[Path]:
        """The working image and its label map (PNG or NIfTI) with a provenance JSON beside them."""
        from lesion_studio.core.image_export import export_working_image

        image, doc = self.state.image, self.document
        if image is None or doc is None:
            self.show_error("Nothing to export", "Open an image first.")
            return []
        try:
            written = export_working_image(image, doc, path)
        except (LesionStudioError, OSError, ValueError) as exc:
            self.show_error("Cannot export image", f"{path}: {exc}")
            return []
        self.statusBar().showMessage(f"Exported {', '.join(p.name for p in written)}", 6000)
        return written

    def show_shortcuts(self) -> None:
        self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.open()

    # ------------------------------------------------------------------ autosave and recovery

    def autosave_now(self, wait: bool = False) -> bool:
        """Write the recovery if anything changed since the last one.

        The copy is taken here (milliseconds); writing it (up to a second for a large image)
        happens on a background thread so painting never stutters. `wait` blocks until written.
        """
        doc = self.document
        if doc is None or self.state.image is None:
            return False
        if self._autosave_thread is not None and self._autosave_thread.is_alive():
            if not wait:
                return False  # the previous write is still running; the next tick catches up
            self._autosave_thread.join()
        job = self.autosave.prepare(doc, self.session_state())
        if job is None:
            return False

        def write() -> None:
            try:
                self.autosave.write(job)
            except (LesionStudioError, OSError) as exc:
                self._autosave_error = str(exc)

        self._autosave_thread = threading.Thread(target=write, name="autosave", daemon=True)
        self._autosave_thread.start()
        if wait:
            self._autosave_thread.join()
        if self._autosave_error:
            self.statusBar().showMessage(f"Autosave failed: {self._autosave_error}", 8000)
            self._autosave_error = None
        return True

    def offer_recovery(self) -> None:
        """After a crash: offer to restore what the previous run autosaved."""
        recoveries = self.autosave.find_recoveries()
        if not recoveries:
            return
        latest = recoveries[0]
        if self.ask_recover(latest):
            self.recover(latest)
        else:
            self.autosave.discard(latest)

    def ask_recover(self, recovery: Recovery) -> bool:
        """Ask whether to restore a recovery (tests replace this)."""
        answer = QMessageBox.question(
            self, "Recover unsaved work?",
            f"lesion-studio did not close cleanly. Restore the autosaved masks "
            f"({recovery.n_lesions} lesion(s)) of {recovery.image_path}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def recover(self, recovery: Recovery) -> None:
        try:
            doc, session = self.autosave.restore(recovery)
        except (LesionStudioError, OSError, ValueError) as exc:
            self.show_error("Cannot recover", str(exc))
            return
        if not session.image_path:
            self.show_error("Cannot recover", f"{recovery.session_file}: no image recorded")
            return
        self._pending_session = (doc, session)
        self._pending_is_recovery = True
        self.autosave.discard(recovery)
        self._load(session.image_path)
