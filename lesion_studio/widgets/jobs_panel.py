"""The jobs list: state, progress, elapsed time and ETA per job; cancel / resume / remove;
the selected job's log and, when it failed, its error with the cause and a hint.

A view only: it renders `JobRecord`s handed to it and emits requests; the job manager acts.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.jobs import JobRecord, JobState, format_duration
from lesion_studio.models.progress import format_rate

COLUMNS = ("Compare", "Job", "State", "Progress", "Elapsed", "ETA")
STATE_COLORS = {
    JobState.QUEUED: "#9aa4b1",
    JobState.RUNNING: "#4cc9f0",
    JobState.CANCELLING: "#ffd166",
    JobState.CANCELLED: "#ffd166",
    JobState.FAILED: "#ff6b6b",
    JobState.DONE: "#06d6a0",
}
MAX_LOG_LINES = 5000


def progress_text(record: JobRecord) -> str:
    """What the Progress column says: the phase before the first step, then percent, steps
    and the speed ("s/it" when slower than one step a second)."""
    running = record.state in (JobState.RUNNING, JobState.CANCELLING)
    if running and record.phase:
        return f"{record.phase}…"
    if not record.total_steps:
        return "–"
    text = f"{100 * record.fraction:.0f}%  ({record.step}/{record.total_steps})"
    if running and record.it_per_s:
        text += f"  {format_rate(record.it_per_s)}"
    return text


class JobsPanel(QWidget):
    """Table of jobs plus the selected job's log and error."""

    newRequested = Signal()
    cancelRequested = Signal(str)
    resumeRequested = Signal(str)
    removeRequested = Signal(str)
    selectionChanged = Signal(str)  # "" when nothing is selected
    openRequested = Signal(str)  # a job row was double-clicked
    compareChanged = Signal(list)  # ids ticked for comparison

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[str, int] = {}
        self._records: dict[str, JobRecord] = {}
        self._updating = False

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumWidth(420)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.table.setToolTip("Double-click a finished job to open its results")

        self.new_button = QPushButton("New training…")
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.remove_button = QPushButton("Remove")
        self.cancel_button.setToolTip("Stop at the next step; a checkpoint is written")
        self.resume_button.setToolTip("Continue a cancelled or failed training from its last checkpoint")
        self.remove_button.setToolTip("Forget this finished job (its files stay on disk)")
        self.new_button.clicked.connect(self.newRequested)
        self.cancel_button.clicked.connect(lambda: self._emit_for_selected(self.cancelRequested))
        self.resume_button.clicked.connect(lambda: self._emit_for_selected(self.resumeRequested))
        self.remove_button.clicked.connect(lambda: self._emit_for_selected(self.removeRequested))

        buttons = QHBoxLayout()
        for button in (self.new_button, self.cancel_button, self.resume_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #ff6b6b;")
        self.error_label.setVisible(False)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSize(8)
        self.log_view.setFont(mono)

        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.error_label)
        bottom_layout.addWidget(self.log_view, 1)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(buttons)
        top_layout.addWidget(self.table, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self._update_buttons()

    # ------------------------------------------------------------------ rows
    def set_record(self, record: JobRecord) -> None:
        """Add or update the row of `record`."""
        self._records[record.id] = record
        self._updating = True
        try:
            row = self._rows.get(record.id)
            if row is None:
                row = self.table.rowCount()
                self.table.insertRow(row)
                self._rows[record.id] = row
                compare = QTableWidgetItem()
                compare.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                compare.setCheckState(Qt.CheckState.Unchecked)
                compare.setData(Qt.ItemDataRole.UserRole, record.id)
                compare.setToolTip("Overlay this run on the dashboard")
                self.table.setItem(row, 0, compare)
                for col in range(1, len(COLUMNS)):
                    self.table.setItem(row, col, QTableWidgetItem())
            texts = (record.title, record.state.value, progress_text(record),
                     format_duration(record.running_elapsed_s()), format_duration(record.eta_s))
            for col, text in enumerate(texts, start=1):
                item = self.table.item(row, col)
                if item.text() != text:
                    item.setText(text)
            self.table.item(row, 2).setForeground(QColor(STATE_COLORS[record.state]))
            self.table.item(row, 1).setToolTip(record.out_dir)
        finally:
            self._updating = False
        if record.id == self.selected_id():
            self._show_error(record)
            self._update_buttons()

    def remove_record(self, job_id: str) -> None:
        row = self._rows.pop(job_id, None)
        self._records.pop(job_id, None)
        if row is None:
            return
        self.table.removeRow(row)
        self._rows = {jid: (r - 1 if r > row else r) for jid, r in self._rows.items()}

    def tick(self) -> None:
        """Refresh elapsed times of running jobs (a 1 s timer calls this)."""
        for record in self._records.values():
            if record.state in (JobState.RUNNING, JobState.CANCELLING):
                self.set_record(record)

    def select(self, job_id: str) -> None:
        row = self._rows.get(job_id)
        if row is not None:
            self.table.selectRow(row)

    def selected_id(self) -> str:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return ""
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item else ""

    def compared_ids(self) -> list[str]:
        ids = []
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.checkState() == Qt.CheckState.Checked:
                ids.append(item.data(Qt.ItemDataRole.UserRole))
        return ids

    def set_compared(self, job_id: str, on: bool) -> None:
        row = self._rows.get(job_id)
        if row is not None:
            self.table.item(row, 0).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    # ------------------------------------------------------------------ log and error
    def set_log(self, lines: list[str]) -> None:
        self.log_view.setPlainText("\n".join(lines[-MAX_LOG_LINES:]))
        self.log_view.moveCursor(self.log_view.textCursor().MoveOperation.End)

    def append_log(self, lines: list[str]) -> None:
        if lines:
            self.log_view.appendPlainText("\n".join(lines))

    def log_text(self) -> str:
        return self.log_view.toPlainText()

    def _show_error(self, record: JobRecord | None) -> None:
        if record is None or not record.error:
            self.error_label.setVisible(False)
            self.error_label.clear()
            return
        text = f"<b>{record.error_type or 'Error'}</b>: {_html(record.error)}"
        if record.hint:
            text += f"<br><i>Hint:</i> {_html(record.hint)}"
        self.error_label.setText(text)
        self.error_label.setVisible(True)

    def error_text(self) -> str:
        return self.error_label.text() if self.error_label.isVisible() else ""

    # ------------------------------------------------------------------ internals
    def _emit_for_selected(self, signal) -> None:
        job_id = self.selected_id()
        if job_id:
            signal.emit(job_id)

    def _on_selection(self) -> None:
        job_id = self.selected_id()
        self._show_error(self._records.get(job_id))
        self._update_buttons()
        self.selectionChanged.emit(job_id)

    def _on_double_click(self, row: int, _column: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.openRequested.emit(item.data(Qt.ItemDataRole.UserRole))

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if not self._updating and item.column() == 0:
            self.compareChanged.emit(self.compared_ids())

    def _update_buttons(self) -> None:
        record = self._records.get(self.selected_id())
        self.cancel_button.setEnabled(record is not None and record.state in (JobState.QUEUED, JobState.RUNNING))
        self.resume_button.setEnabled(record is not None and record.can_resume)
        self.remove_button.setEnabled(record is not None and record.state.finished)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")
