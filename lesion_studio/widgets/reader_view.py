"""Reader mode: one blinded patch at a time, answered from the keyboard.

The window shows "Case k of N", never a file name or case id. R / S call real or synthetic,
1..N give the confidence, Y / N answer "lesion present?" when the study asks; Enter or → moves
on only when the answer is complete; ← / Backspace go back only when the study allows it; Esc
pauses (the session is already saved after every answer) and closes. The wheel zooms,
right-drag changes window/level, Home fits, W resets the window. Each case's reading time is
measured with a monotonic clock from the moment it is shown; the clock stops while the window
is inactive or minimized, time before a pause (Esc) is not counted, and a case read again after
going back adds its new time.

The widget renders a `core.reader_study.session.ReaderSession` and forwards the reader's
answers to it; the session validates and saves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.image import Window
from lesion_studio.core.reader_study.session import ReaderSession, check_answer
from lesion_studio.widgets.image_canvas import WINDOW_DRAG_FRACTION_PER_PX, ImageCanvas

#: Zoom step of the + / - keys.
KEY_ZOOM_FACTOR = 1.25

_STYLE = """
QWidget#readerView { background: #0b0c0f; }
QLabel { color: #d7dde5; }
QLabel#readerCaseLabel { font-size: 20pt; font-weight: 600; color: #ffffff; }
QLabel#readerTitle { font-size: 22pt; font-weight: 600; color: #ffffff; }
QLabel#readerBody { font-size: 13pt; color: #d7dde5; }
QLabel#readerQuestion { font-size: 12pt; font-weight: 600; color: #c8d0da; margin-top: 10px; }
QLabel#readerHint { font-size: 12pt; color: #ffd54a; }
QLabel#readerError { font-size: 12pt; color: #ff8a80; }
QLabel#readerLegend { font-size: 11pt; color: #aab3bf; }
QFrame#readerPanel { background: #15181d; border: 1px solid #2a2f38; border-radius: 8px; }
QPushButton { font-size: 13pt; min-height: 34px; padding: 2px 10px; color: #d7dde5; background: #262a31;
              border: 1px solid #3a404a; border-radius: 5px; }
QPushButton:checked { background: #3d7eff; color: #ffffff; border-color: #7fb3ff; }
QPushButton:disabled { color: #5c636e; }
QProgressBar { border: 1px solid #3a404a; border-radius: 4px; background: #15181d; color: #d7dde5;
               text-align: center; min-height: 18px; }
QProgressBar::chunk { background: #3d7eff; border-radius: 3px; }
"""

CALL_KEYS = {Qt.Key.Key_R: "real", Qt.Key.Key_S: "synthetic"}
NEXT_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Right)
BACK_KEYS = (Qt.Key.Key_Left, Qt.Key.Key_Backspace)


def _choice_buttons(texts: list[str], parent: QWidget) -> tuple[QButtonGroup, list[QPushButton]]:
    group = QButtonGroup(parent)
    group.setExclusive(True)
    buttons = []
    for i, text in enumerate(texts):
        button = QPushButton(text)
        button.setCheckable(True)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the reader window
        group.addButton(button, i)
        buttons.append(button)
    return group, buttons


class ReaderView(QWidget):
    """A top-level reading window for one reader's session of one study."""

    paused = Signal()  # closed before the last case (Esc or the window's close button)
    finishedReading = Signal(int)  # the thank-you page is shown; number of answered cases
    errorShown = Signal(str)

    def __init__(self, session: ReaderSession, clock: Callable[[], float] = time.monotonic,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.study = session.study
        self.clock = clock
        self.call: str | None = None
        self.confidence: int | None = None
        self.lesion_present: bool | None = None
        self.last_error: str | None = None
        self._visit_start: float | None = None  # clock time the current case was (re)started; None: stopped
        self._visit_elapsed = 0.0  # reading time of this visit before the last suspension
        self._shown_index: int | None = None
        self._window = Window(self.study.window_center, self.study.window_width)
        self._closing_done = False

        self.setObjectName("readerView")
        self.setStyleSheet(_STYLE)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setWindowTitle(f"Reader study — {self.study.name}")

        self.pages = QStackedWidget()
        self.intro_page = self._build_intro_page()
        self.reading_page = self._build_reading_page()
        self.done_page = self._build_done_page()
        for page in (self.intro_page, self.reading_page, self.done_page):
            self.pages.addWidget(page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)
        if self.session.finished:
            self._show_done()
        else:
            self._show_intro()

    def sizeHint(self) -> QSize:
        return QSize(1366, 768)

    # ------------------------------------------------------------------ construction
    def _build_intro_page(self) -> QWidget:
        page = QWidget()
        self.intro_title = QLabel(self.study.name)
        self.intro_title.setObjectName("readerTitle")
        self.intro_text = QLabel()
        self.intro_text.setObjectName("readerBody")
        self.intro_text.setWordWrap(True)
        self.intro_text.setTextFormat(Qt.TextFormat.PlainText)
        self.intro_start = QLabel()
        self.intro_start.setObjectName("readerHint")
        box = QVBoxLayout()
        self.intro_reader = QLabel()
        self.intro_reader.setObjectName("readerLegend")
        box.addWidget(self.intro_title)
        box.addWidget(self.intro_reader)
        box.addSpacing(12)
        box.addWidget(self.intro_text)
        box.addSpacing(18)
        box.addWidget(self.intro_start)
        return _centred(page, box)

    def _build_done_page(self) -> QWidget:
        page = QWidget()
        self.done_title = QLabel()
        self.done_title.setObjectName("readerTitle")
        self.done_text = QLabel()
        self.done_text.setObjectName("readerBody")
        self.done_text.setWordWrap(True)
        box = QVBoxLayout()
        box.addWidget(self.done_title)
        box.addSpacing(12)
        box.addWidget(self.done_text)
        return _centred(page, box)

    def _build_reading_page(self) -> QWidget:
        page = QWidget()
        self.case_label = QLabel()
        self.case_label.setObjectName("readerCaseLabel")
        self.progress = QProgressBar()
        self.progress.setRange(0, self.study.n_cases)
        self.progress.setFormat("%v of %m answered")
        self.progress.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        top = QHBoxLayout()
        top.addWidget(self.case_label)
        top.addSpacing(24)
        top.addWidget(self.progress, 1)
        top.addSpacing(24)
        self.reader_label = QLabel(f"Reader: {self.session.reader}")
        self.reader_label.setObjectName("readerLegend")
        top.addWidget(self.reader_label)

        self.canvas = ImageCanvas()
        self.canvas.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.canvas.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.canvas.view.setBackground("#000000")
        self.canvas.windowDragged.connect(self._on_window_drag)
        self.canvas.view_box.sigRangeChanged.connect(lambda *_: self._update_view_text())
        self.image_error = QLabel()
        self.image_error.setObjectName("readerError")
        self.image_error.setWordWrap(True)
        self.image_error.setVisible(False)

        panel = QFrame()
        panel.setObjectName("readerPanel")
        panel.setFixedWidth(340)
        grid = QVBoxLayout(panel)
        grid.setContentsMargins(16, 12, 16, 16)
        levels = self.study.confidence_levels
        self.call_group, self.call_buttons = _choice_buttons(["R  Real", "S  Synthetic"], self)
        self.confidence_group, self.confidence_buttons = _choice_buttons([str(i + 1) for i in range(levels)], self)
        self.lesion_group, self.lesion_buttons = _choice_buttons(["Y  Yes", "N  No"], self)
        self.call_group.idClicked.connect(lambda i: self.set_call(("real", "synthetic")[i]))
        self.confidence_group.idClicked.connect(lambda i: self.set_confidence(i + 1))
        self.lesion_group.idClicked.connect(lambda i: self.set_lesion_present(i == 0))
        if self.study.ask_real_or_synthetic:
            grid.addWidget(_question("Real or synthetic?"))
            row = QHBoxLayout()
            for b in self.call_buttons:
                row.addWidget(b)
            grid.addLayout(row)
            grid.addWidget(_question("How sure?"))
            scale = QLabel(f"1 = guess   ·   {levels} = certain")
            scale.setObjectName("readerLegend")
            grid.addWidget(scale)
            conf = QGridLayout()
            for i, b in enumerate(self.confidence_buttons):
                b.setMinimumWidth(40)
                conf.addWidget(b, 0, i)
            grid.addLayout(conf)
        if self.study.ask_lesion_present:
            grid.addWidget(_question("Lesion present?"))
            row = QHBoxLayout()
            for b in self.lesion_buttons:
                row.addWidget(b)
            grid.addLayout(row)
        grid.addSpacing(14)
        self.hint = QLabel()
        self.hint.setObjectName("readerHint")
        self.hint.setWordWrap(True)
        grid.addWidget(self.hint)
        self.error_label = QLabel()
        self.error_label.setObjectName("readerError")
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(False)
        grid.addWidget(self.error_label)
        grid.addStretch(1)
        self.view_text = QLabel()
        self.view_text.setObjectName("readerLegend")
        grid.addWidget(self.view_text)

        centre = QHBoxLayout()
        image_box = QVBoxLayout()
        image_box.addWidget(self.canvas, 1)
        image_box.addWidget(self.image_error)
        centre.addLayout(image_box, 1)
        centre.addWidget(panel)

        self.legend = QLabel(self.legend_text())
        self.legend.setObjectName("readerLegend")
        self.legend.setWordWrap(True)
        self.legend.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        layout = QVBoxLayout(page)
        layout.setContentsMargins(18, 12, 18, 10)
        layout.addLayout(top)
        layout.addLayout(centre, 1)
        layout.addWidget(self.legend)
        return page

    def legend_text(self) -> str:
        """The on-screen key legend (only the keys this study uses)."""
        parts = []
        if self.study.ask_real_or_synthetic:
            parts += ["R real", "S synthetic", f"1–{self.study.confidence_levels} confidence"]
        if self.study.ask_lesion_present:
            parts.append("Y / N lesion present")
        parts.append("Enter / → next")
        if self.study.allow_back:
            parts.append("← / Backspace back")
        parts += ["Esc pause", "wheel / + − zoom", "right-drag window/level", "Home fit", "W reset window"]
        return "   ·   ".join(parts)

    # ------------------------------------------------------------------ pages
    def _show_intro(self) -> None:
        n, k = self.study.n_cases, self.session.position
        self.intro_text.setText(self.study.instructions or "Read each patch and answer the questions.")
        if k == 0 and not self.session.answers:
            start = f"{n} cases. Press Enter to start."
        else:
            start = f"Welcome back, {self.session.reader}. Press Enter to resume at case {k + 1} of {n}."
        self.intro_start.setText(start + "   Esc closes (your answers are kept).")
        self.intro_reader.setText(f"Reader: {self.session.reader}")
        self.pages.setCurrentWidget(self.intro_page)

    def _show_done(self) -> None:
        self._visit_start, self._visit_elapsed = None, 0.0
        n = self.session.n_answered
        self.done_title.setText(f"Thank you — {n} cases answered.")
        text = (f"Your answers are saved ({self.session.path.parent.name}/{self.session.path.name}). "
                "Press Enter or Esc to close.")
        if self.session.can_go_back:
            text += " ← goes back to the last case."
        self.done_text.setText(text)
        self.pages.setCurrentWidget(self.done_page)
        self.finishedReading.emit(n)

    def start_reading(self) -> None:
        """Leave the instructions page and show the current case."""
        self.pages.setCurrentWidget(self.reading_page)
        self._show_current_case()

    def _show_current_case(self) -> None:
        case = self.session.current_case()
        if case is None:
            self._show_done()
            return
        index = self.session.position
        self._shown_index = index
        previous = self.session.answer_for(case.id)
        self.call = previous.call if previous else None
        self.confidence = previous.confidence if previous else None
        self.lesion_present = previous.lesion_present if previous else None
        self.case_label.setText(f"Case {index + 1} of {self.study.n_cases}")
        self.progress.setValue(self.session.n_answered)
        self._window = Window(self.study.window_center, self.study.window_width)
        self.error_label.setVisible(False)
        try:
            image = self.study.case_image(index)
        except LesionStudioError as exc:
            self.canvas.clear()
            self.image_error.setText(f"This case cannot be shown: {exc}. Press Esc and tell the study's organiser.")
            self.image_error.setVisible(True)
        else:
            self.image_error.setVisible(False)
            self.canvas.show_plane(image, (self._window.low, self._window.high), case.spacing_mm)
            self.canvas.fit()
        self._render_answer()
        self._update_view_text()
        self._visit_start, self._visit_elapsed = self.clock(), 0.0

    # ------------------------------------------------------------------ answers
    def set_call(self, call: str) -> None:
        if self.study.ask_real_or_synthetic and self._reading():
            self.call = call
            self._render_answer()

    def set_confidence(self, level: int) -> None:
        if self.study.ask_real_or_synthetic and self._reading() and 1 <= level <= self.study.confidence_levels:
            self.confidence = level
            self._render_answer()

    def set_lesion_present(self, present: bool) -> None:
        if self.study.ask_lesion_present and self._reading():
            self.lesion_present = present
            self._render_answer()

    def missing(self) -> str:
        """What the current answer still lacks ("" when Enter may go on)."""
        return check_answer(self.study, self.call, self.confidence, self.lesion_present)

    def elapsed_s(self) -> float:
        """Reading time of the current case in this visit."""
        running = 0.0 if self._visit_start is None else max(0.0, self.clock() - self._visit_start)
        return self._visit_elapsed + running

    def suspend_timing(self) -> None:
        """Stop the case clock (the window lost focus or was minimized)."""
        if self._visit_start is not None:
            self._visit_elapsed += max(0.0, self.clock() - self._visit_start)
            self._visit_start = None

    def resume_timing(self) -> None:
        """Restart the case clock after a suspension (only while a case is shown)."""
        if self._visit_start is None and self._reading() and self.session.current_case() is not None:
            self._visit_start = self.clock()

    def next_case(self) -> bool:
        """Record the complete answer and show the next case; False (with a hint) otherwise."""
        if not self._reading():
            return False
        case = self.session.current_case()
        if case is None:
            return False
        problem = self.missing()
        if problem:
            self.hint.setText(f"To go on: {problem}.")
            return False
        try:
            self.session.record(case.id, self.call, self.confidence, self.lesion_present, self.elapsed_s())
        except LesionStudioError as exc:
            self._show_error(f"Your answer could not be saved: {exc}")
            return False
        self._show_current_case()
        return True

    def previous_case(self) -> bool:
        """Go back one case when the study allows it."""
        on_done = self.pages.currentWidget() is self.done_page
        if not (self._reading() or on_done):
            return False
        if not self.study.allow_back:
            self.hint.setText("This study does not allow going back.")
            return False
        if not self.session.can_go_back:
            self.hint.setText("This is the first case.")
            return False
        try:
            self.session.back()
        except LesionStudioError as exc:
            self._show_error(f"Cannot go back: {exc}")
            return False
        self.pages.setCurrentWidget(self.reading_page)
        self._show_current_case()
        return True

    def pause(self) -> None:
        """Save and close; reopening the study as this reader resumes at the same case."""
        self.close()

    def _reading(self) -> bool:
        return self.pages.currentWidget() is self.reading_page

    def _render_answer(self) -> None:
        for group, buttons, chosen in (
            (self.call_group, self.call_buttons, {"real": 0, "synthetic": 1}.get(self.call)),
            (self.confidence_group, self.confidence_buttons, None if self.confidence is None else self.confidence - 1),
            (self.lesion_group, self.lesion_buttons, {True: 0, False: 1}.get(self.lesion_present)),
        ):
            group.setExclusive(False)  # an exclusive group cannot show "nothing chosen yet"
            for i, b in enumerate(buttons):
                b.setChecked(i == chosen)
            group.setExclusive(True)
        problem = self.missing()
        self.hint.setText("Press Enter to continue." if not problem else f"Next: {problem}.")

    def _show_error(self, text: str) -> None:
        self.last_error = text
        self.error_label.setText(text)
        self.error_label.setVisible(True)
        self.errorShown.emit(text)

    # ------------------------------------------------------------------ view
    def _on_window_drag(self, dx: float, dy: float) -> None:
        step = max(self._window.width, 1.0) * WINDOW_DRAG_FRACTION_PER_PX
        self._window = Window(self._window.center + dy * step, max(1.0, self._window.width + dx * step))
        self.canvas.set_levels((self._window.low, self._window.high))
        self._update_view_text()

    def reset_window(self) -> None:
        self._window = Window(self.study.window_center, self.study.window_width)
        self.canvas.set_levels((self._window.low, self._window.high))
        self._update_view_text()

    def _update_view_text(self) -> None:
        unit = f" {self.study.units}" if self.study.units else ""
        self.view_text.setText(f"Window {self._window.width:.0f}{unit}, level {self._window.center:.0f}{unit}\n"
                               f"Zoom {self.canvas.zoom_factor():.1f}×")

    # ------------------------------------------------------------------ keys and closing
    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = int(event.key())
        page = self.pages.currentWidget()
        if key == Qt.Key.Key_Escape:
            self.pause()
        elif page is self.intro_page:
            if key in NEXT_KEYS or key == Qt.Key.Key_Space:
                self.start_reading()
        elif page is self.done_page:
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.close()
            elif key in BACK_KEYS:
                self.previous_case()
        elif key in CALL_KEYS:
            self.set_call(CALL_KEYS[key])
        elif Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
            self.set_confidence(int(key) - int(Qt.Key.Key_0))
        elif key == Qt.Key.Key_Y:
            self.set_lesion_present(True)
        elif key == Qt.Key.Key_N:
            self.set_lesion_present(False)
        elif key in NEXT_KEYS:
            self.next_case()
        elif key in BACK_KEYS:
            self.previous_case()
        elif key == Qt.Key.Key_Home:
            self.canvas.fit()
        elif key == Qt.Key.Key_W:
            self.reset_window()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.canvas.zoom_at(KEY_ZOOM_FACTOR)
        elif key == Qt.Key.Key_Minus:
            self.canvas.zoom_at(1.0 / KEY_ZOOM_FACTOR)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def event(self, event: QEvent) -> bool:
        """Claim unmodified keys before any application-wide shortcut (R, S, digits) sees them."""
        if event.type() == QEvent.Type.ShortcutOverride and event.modifiers() in (
                Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier):
            event.accept()
            return True
        return super().event(event)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        """Time spent in another window, or minimized, is not reading time."""
        if event.type() == QEvent.Type.ActivationChange:
            if self.isActiveWindow():
                self.resume_timing()
            else:
                self.suspend_timing()
        elif event.type() == QEvent.Type.WindowStateChange and self.isMinimized():
            self.suspend_timing()
        super().changeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.activateWindow()
        self.setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Pause: the answers are saved already; the position is written once more."""
        if not self._closing_done:
            self._closing_done = True
            self.suspend_timing()
            if self.session.answers or self.session.path.exists():
                try:
                    self.session.save()
                except LesionStudioError as exc:
                    self.last_error = str(exc)  # every answer was saved when given; only the time stamp is lost
            if not self.session.finished:
                self.paused.emit()
        super().closeEvent(event)


def _question(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("readerQuestion")
    return label


def _centred(page: QWidget, box: QVBoxLayout) -> QWidget:
    """`box` in a fixed-width column in the middle of `page`."""
    column = QWidget()
    column.setMaximumWidth(820)
    column.setLayout(box)
    outer = QVBoxLayout(page)
    outer.addStretch(1)
    row = QHBoxLayout()
    row.addStretch(1)
    row.addWidget(column, 4)
    row.addStretch(1)
    outer.addLayout(row)
    outer.addStretch(2)
    return page
