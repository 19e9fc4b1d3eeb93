"""The progress view of an evaluate or export job: what it is, how far, how long, and a button
to its results once it is done (a training job shows the training dashboard instead)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from lesion_studio.core.jobs import JobKind, JobRecord, JobState, format_duration

OPEN_LABELS = {JobKind.EVALUATE: "Open results", JobKind.EXPORT: "Open output folder"}


class TaskProgressView(QWidget):
    """Title, state, a progress bar with done/total, elapsed and ETA, and "Open results"."""

    openRequested = Signal(str)  # job id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._job_id = ""
        self.title_label = QLabel("No job selected")
        self.title_label.setStyleSheet("font-weight: 600;")
        self.state_label = QLabel("")
        self.bar = QProgressBar()
        self.status_label = QLabel("")
        self.folder_label = QLabel("")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setWordWrap(True)
        self.open_button = QPushButton("Open results")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(lambda: self._job_id and self.openRequested.emit(self._job_id))

        header = QHBoxLayout()
        header.addWidget(self.title_label)
        header.addStretch(1)
        header.addWidget(self.state_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(header)
        layout.addWidget(self.bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.folder_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        layout.addStretch(1)

    @property
    def job_id(self) -> str:
        return self._job_id

    def set_record(self, record: JobRecord | None) -> None:
        """Show `record` (None clears)."""
        if record is None:
            self._job_id = ""
            self.title_label.setText("No job selected")
            for label in (self.state_label, self.status_label, self.folder_label):
                label.clear()
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
            self.open_button.setEnabled(False)
            return
        self._job_id = record.id
        self.title_label.setText(record.title)
        self.state_label.setText(record.state.value)
        running = record.state in (JobState.RUNNING, JobState.CANCELLING)
        if record.total_steps:
            self.bar.setRange(0, record.total_steps)
            self.bar.setValue(min(record.step, record.total_steps))
        else:
            self.bar.setRange(0, 0 if running else 1)  # busy until the task knows its total
            self.bar.setValue(1 if record.state is JobState.DONE else 0)
        parts = [f"{record.step}/{record.total_steps} units" if record.total_steps else "",
                 f"elapsed {format_duration(record.running_elapsed_s())}"]
        if running:
            parts.append(f"ETA {format_duration(record.eta_s)}")
        self.status_label.setText(" · ".join(p for p in parts if p))
        self.folder_label.setText(f"Output: {record.out_dir}" if record.out_dir else "")
        self.open_button.setText(OPEN_LABELS.get(record.kind, "Open results"))
        self.open_button.setEnabled(record.state.finished and bool(record.out_dir))
