"""Background jobs as plain data: states, records, metric history and the persisted history.

Qt-free (the GUI's `app.job_manager` runs jobs in QThreads; this module only describes them).
A job history lives in `data_dir()/jobs/`: `history.jsonl` (one `JobRecord` per line, rewritten
atomically on every state change) and one folder per job with `log.txt` (the lines the headless
CLI prints) and `metrics.jsonl` (losses, learning rates, speed and validation metrics by step).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from lesion_studio.core.app_paths import data_dir
from lesion_studio.core.errors import LesionStudioError
from lesion_studio.core.events import EventEmitter

HISTORY_FILE = "history.jsonl"
LOG_FILE = "log.txt"
METRICS_FILE = "metrics.jsonl"


class JobError(LesionStudioError):
    """A job could not be submitted, resumed or read back from the history."""


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DONE = "done"

    @property
    def finished(self) -> bool:
        return self in (JobState.CANCELLED, JobState.FAILED, JobState.DONE)

    @property
    def active(self) -> bool:
        return not self.finished


class JobKind(str, Enum):
    TRAIN = "train"
    EVALUATE = "evaluate"
    EXPORT = "export"


class Resource(str, Enum):
    """Which slot a job occupies: by default one GPU job at a time, N CPU jobs."""

    GPU = "gpu"
    CPU = "cpu"


@dataclass
class JobRecord:
    """Everything the history remembers about one job (JSON-serializable)."""

    id: str
    kind: JobKind
    title: str
    resource: Resource = Resource.CPU
    state: JobState = JobState.QUEUED
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict() for training jobs
    out_dir: str = ""
    created_at: float = field(default_factory=time.time)  # seconds since the epoch
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float = 0.0  # running time summed over attempts (resume adds to it)
    step: int = 0
    total_steps: int = 0
    eta_s: float | None = None
    checkpoint: str | None = None  # the last checkpoint written (periodic, cancel or final)
    checkpoint_step: int = 0
    best_checkpoint: str | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)  # criterion, best_step, best_value (models/selection.py)
    error: str | None = None  # the reason a person can act on
    error_type: str | None = None  # e.g. "ConfigError", "OutOfMemoryError"
    hint: str | None = None  # what to try (CUDA out of memory: a smaller batch ...)
    attempts: int = 0  # 1 + number of resumes that started
    resume_from: str | None = None  # checkpoint the next attempt starts from
    phase: str = ""  # what a running training does before its next step report ("preparing data")
    it_per_s: float | None = None  # the last reported speed

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def can_resume(self) -> bool:
        return (
            self.kind is JobKind.TRAIN
            and self.state in (JobState.CANCELLED, JobState.FAILED)
            and bool(self.checkpoint)
            and Path(self.checkpoint + ".json").is_file()
        )

    def running_elapsed_s(self, now: float | None = None) -> float:
        """Elapsed seconds including the current attempt when it is running."""
        if self.state in (JobState.RUNNING, JobState.CANCELLING) and self.started_at is not None:
            return self.elapsed_s + ((now or time.time()) - self.started_at)
        return self.elapsed_s

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = self.kind.value
        data["state"] = self.state.value
        data["resource"] = self.resource.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["kind"] = JobKind(values["kind"])
        values["state"] = JobState(values.get("state", "failed"))
        values["resource"] = Resource(values.get("resource", "cpu"))
        return cls(**values)


def new_job_id() -> str:
    """Sortable and unique: creation time plus a random suffix."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def format_duration(seconds: float | None) -> str:
    """`1:02:03` / `2:03`; `–` when unknown."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "–"
    seconds = int(round(max(0.0, seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


# -- failures explained ----------------------------------------------------------------------
def explain_failure(exc: BaseException) -> tuple[str, str, str | None]:
    """`(error_type, reason, hint)` for an exception raised by a job (no torch import)."""
    error_type = type(exc).__name__
    text = str(exc) or error_type
    lowered = text.lower()
    if error_type == "OutOfMemoryError" or "out of memory" in lowered:
        hint = (
            "The GPU ran out of memory: lower model.batch_size or model.patch_px, close other GPU "
            "programs, or train on the CPU; resume continues from the last checkpoint."
        )
        return "OutOfMemoryError", "CUDA out of memory: " + text.splitlines()[0], hint
    if isinstance(exc, LesionStudioError):
        hint = None
        if "dataset" in lowered or "dataset.json" in lowered:
            hint = "Fix the dataset problems listed above (see docs/dataset_format.md), then start again."
        elif error_type == "CheckpointError":
            hint = "The checkpoint does not fit this configuration; start a new training instead of resuming."
        return error_type, text, hint
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return error_type, text, "Check that the folders exist and are writable."
    return error_type, f"{error_type}: {text}", None


# -- metric history --------------------------------------------------------------------------
class MetricHistory:
    """Step-indexed series of one run: losses, lr, speed (`kind="step"`), metrics (`"val"`).

    Rows are `{"kind", "step", <name>: value, ...}`; `changed` fires after rows are added.
    Appending is thread-safe; readers take `series(...)` copies.
    """

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self._rows: list[dict[str, Any]] = []
        self._columns: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
        self._lock = threading.Lock()
        self.changed = EventEmitter()
        for row in rows or []:
            self._append(row)

    def _append(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        columns = self._columns.setdefault(row["kind"], {})
        for key, value in row.items():
            if key not in ("kind", "step"):
                steps, values = columns.setdefault(key, ([], []))
                steps.append(row["step"])
                values.append(value)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows)

    def add(self, kind: str, step: int, values: dict[str, float]) -> dict[str, Any]:
        row = {"kind": kind, "step": int(step), **{k: float(v) for k, v in values.items()}}
        with self._lock:
            self._append(row)
        self.changed.emit()
        return row

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` (a resumed run restarts from its checkpoint's step)."""
        with self._lock:
            rows = [r for r in self._rows if r["step"] <= step]
            self._rows, self._columns = [], {}
            for row in rows:
                self._append(row)
        self.changed.emit()

    def names(self, kind: str) -> list[str]:
        """Column names of one kind, in first-seen order."""
        with self._lock:
            return list(self._columns.get(kind, {}))

    def series(self, kind: str, name: str) -> tuple[list[int], list[float]]:
        """`(steps, values)` copies of one column."""
        with self._lock:
            steps, values = self._columns.get(kind, {}).get(name, ([], []))
            return list(steps), list(values)

    def last_step(self) -> int:
        rows = self.rows
        return rows[-1]["step"] if rows else 0

    def to_csv(self, path: str | Path) -> Path:
        """One row per record: kind, step, then every column seen (empty where absent)."""
        path = Path(path)
        rows = self.rows
        columns: dict[str, None] = {}
        for row in rows:
            for key in row:
                if key not in ("kind", "step"):
                    columns.setdefault(key, None)
        header = ["kind", "step", *columns]
        with _atomic_writer(path) as fh:
            writer = csv.DictWriter(fh, fieldnames=header, restval="")
            writer.writeheader()
            writer.writerows(rows)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MetricHistory":
        """Read `metrics.jsonl`; a torn last line (crash while writing) is skipped."""
        rows = []
        path = Path(path)
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "kind" in row and "step" in row:
                    rows.append(row)
        return cls(rows)


# -- persistence -----------------------------------------------------------------------------
class _atomic_writer:
    """`with _atomic_writer(path) as fh:` writes a temp file beside `path`, then renames it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        return self._fh

    def __exit__(self, exc_type, exc, tb) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)


class JobHistory:
    """The persisted list of jobs in `root` (default `data_dir()/jobs`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir() / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.root / HISTORY_FILE

    def job_dir(self, job_id: str) -> Path:
        path = self.root / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / LOG_FILE

    def metrics_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / METRICS_FILE

    def load(self) -> list[JobRecord]:
        """Records in creation order. Jobs left active by a previous session (the app was
        killed) come back as failed with that reason; they can be resumed from a checkpoint."""
        records: list[JobRecord] = []
        if not self.path.is_file():
            return records
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = JobRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # one unreadable entry must not hide the others
            if record.state.active:
                record.state = JobState.FAILED
                record.error = "interrupted: lesion-studio closed while this job was " + (
                    "queued" if record.started_at is None else "running"
                )
                record.error_type = "Interrupted"
                record.hint = "Resume continues from the last checkpoint." if record.checkpoint else None
            records.append(record)
        return records

    def save(self, records: list[JobRecord]) -> None:
        """Rewrite the whole history atomically (a crash leaves the old or the new file)."""
        with self._lock, _atomic_writer(self.path) as fh:
            for record in records:
                fh.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")

    def read_log(self, job_id: str) -> list[str]:
        path = self.root / job_id / LOG_FILE
        return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []

    def read_metrics(self, job_id: str) -> MetricHistory:
        return MetricHistory.load(self.root / job_id / METRICS_FILE)

    def rewrite_metrics(self, job_id: str, history: MetricHistory) -> None:
        with _atomic_writer(self.metrics_path(job_id)) as fh:
            for row in history.rows:
                fh.write(json.dumps(row) + "\n")


class AppendLog:
    """Appends lines to a file, flushing each time (worker threads; one writer per file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, line: str) -> None:
        self._fh.write(line.rstrip("\n") + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
