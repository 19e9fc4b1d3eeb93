"""The background job queue: training (and evaluate/export tasks) in QThreads.

`JobManager` owns the `JobRecord`s (Qt-free, `core.jobs`), starts queued jobs when a slot is
free (by default one GPU job and `max_cpu_jobs` CPU jobs at a time), forwards the trainer's
events from the worker thread to the UI thread with queued signals, persists the history, and
cancels (cooperatively: the trainer writes a cancel checkpoint) and resumes jobs.

Worker threads write the job's `log.txt` (the lines `lesion-studio train` prints, produced by
the same `ConsoleProgress`) and `metrics.jsonl`; the UI thread keeps the in-memory
`MetricHistory` that the dashboard draws.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

from lesion_studio.app.torch_runtime import ensure_torch_imported
from lesion_studio.core.jobs import (
    AppendLog,
    JobError,
    JobHistory,
    JobKind,
    JobRecord,
    JobState,
    MetricHistory,
    Resource,
    explain_failure,
    new_job_id,
)
from lesion_studio.models.progress import (
    CancelToken,
    CheckpointEvent,
    ConsoleProgress,
    PhaseEvent,
    StepEvent,
    TrainFinished,
    TrainStarted,
    ValidationEvent,
)


#: GIL switch interval while workers run: Python's 5 ms default lets a training thread keep the
#: UI thread waiting several times per paint (each Qt -> Python call of pyqtgraph needs the GIL).
UI_SWITCH_INTERVAL_S = 0.001


def default_cpu_threads() -> int:
    """Torch threads for CPU training in the GUI: leave one core to the event loop."""
    return max(1, (os.cpu_count() or 2) - 1)


def step_row(event: StepEvent) -> dict[str, float]:
    """The metric-history columns of a step: every loss term, `lr_<optimizer>`, `it_per_s`."""
    values = dict(event.losses)
    values.update({f"lr_{name}": lr for name, lr in event.lr.items()})
    values["it_per_s"] = event.it_per_s
    return values


@dataclass(frozen=True)
class OutputFolder:
    """A task found where it writes (`JobContext.set_out_dir`)."""

    path: str


class _LineStream:
    """A text stream for `ConsoleProgress`: every line (tqdm redraws end with `\\r`) is a log line."""

    _BAR_STEP = re.compile(r"\| *(\d+)/(\d+) \[")

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._buffer = ""
        self._bar_step: str | None = None

    def write(self, text: str) -> int:
        self._buffer += text
        while True:
            cut = [i for i in (self._buffer.find("\n"), self._buffer.find("\r")) if i >= 0]
            if not cut:
                break
            i = min(cut)
            line, self._buffer = self._buffer[:i], self._buffer[i + 1 :]
            if not line.strip():
                continue
            match = self._BAR_STEP.search(line)
            if match:  # tqdm redraws its bar around `tqdm.write`: one line per step is enough
                if match.group(1) == self._bar_step:
                    continue
                self._bar_step = match.group(1)
            self._sink(line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class JobContext:
    """What a task function sees in its worker thread: cancel flag, log, metrics, events."""

    def __init__(self, manager: "JobManager", record: JobRecord, token: CancelToken) -> None:
        self._manager = manager
        self.job_id = record.id
        self.config = dict(record.config)
        self.out_dir = record.out_dir
        self.resume_from = record.resume_from
        self.cancel_token = token
        self._log = AppendLog(manager.history.log_path(record.id))
        self._metrics = AppendLog(manager.history.metrics_path(record.id))

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    def log(self, line: str) -> None:
        self._log.write(line)
        self._manager._worker_log.emit(self.job_id, line)

    def metric(self, kind: str, step: int, values: dict[str, float]) -> None:
        row = {"kind": kind, "step": int(step), **{k: float(v) for k, v in values.items()}}
        self._metrics.write(json.dumps(row))

    def event(self, event: object) -> None:
        """Forward any object to the UI thread (`JobManager.jobEvent`)."""
        if isinstance(event, StepEvent):
            self.metric("step", event.step, step_row(event))
        elif isinstance(event, ValidationEvent):
            self.metric("val", event.step, event.metrics)
        self._manager._worker_event.emit(self.job_id, event)

    def set_out_dir(self, path: str | Path) -> None:
        """Tell the UI where the task writes (double-click on the finished job opens it)."""
        self.out_dir = str(path)
        self._manager._worker_event.emit(self.job_id, OutputFolder(str(path)))

    def progress(self, done: int, total: int, eta_s: float | None = None) -> None:
        """Progress of a non-training task (training reports through its events)."""
        self._manager._worker_progress.emit(self.job_id, int(done), int(total), -1.0 if eta_s is None else float(eta_s))

    def close(self) -> None:
        self._log.close()
        self._metrics.close()


Task = Callable[[JobContext], Any]


def run_training(ctx: JobContext, cpu_threads: int, force: bool = False) -> Any:
    """The training task: `Trainer.run` with events to the console formatter and the UI
    (`force`: accept a non-empty run folder lesion-studio did not make, as `train --force`)."""
    from lesion_studio.models.config import TrainConfig
    from lesion_studio.models.trainer import Trainer

    config = TrainConfig.from_dict(ctx.config)
    if config.run.num_threads in (0, None) and config.run.device != "cuda":
        config.run.num_threads = cpu_threads
    console = ConsoleProgress(stream=_LineStream(ctx.log))

    def callback(event: object) -> None:
        console(event)
        ctx.event(event)
        time.sleep(0)  # drop the GIL once per event: a UI thread waiting for it gets it now


    if ctx.resume_from:
        ctx.log(f"resuming from {ctx.resume_from}")
    return Trainer(config, callback=callback, cancel=ctx.cancel_token, force=force).run(resume=ctx.resume_from)


class _Worker(QThread):
    def __init__(self, manager: "JobManager", ctx: JobContext, task: Task) -> None:
        super().__init__(manager)
        self.ctx = ctx
        self.task = task
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:  # worker thread
        try:
            self.result = self.task(self.ctx)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none kills the app
            self.error = exc
            _, reason, hint = explain_failure(exc)
            lines = reason.splitlines() or [reason]
            self.ctx.log("error: " + lines[0])
            for line in lines[1:]:
                self.ctx.log(line)
            if hint:
                self.ctx.log("hint: " + hint)
        finally:
            self.ctx.close()
            self.ctx._manager._worker_done.emit(self.ctx.job_id)  # queued to the UI thread


class JobManager(QObject):
    """Queue of jobs run in QThreads; all public methods are called on the UI thread."""

    jobAdded = Signal(str)
    jobChanged = Signal(str)  # state, progress or result changed
    jobRemoved = Signal(str)
    jobEvent = Signal(str, object)  # training events (StepEvent, SampleEvent, ...) on the UI thread
    jobLog = Signal(str, str)  # one log line

    _worker_event = Signal(str, object)
    _worker_log = Signal(str, str)
    _worker_progress = Signal(str, int, int, float)
    _worker_done = Signal(str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        history: JobHistory | None = None,
        max_gpu_jobs: int = 1,
        max_cpu_jobs: int = 1,
        cpu_threads: int | None = None,
    ) -> None:
        super().__init__(parent)
        self.history = history if history is not None else JobHistory()
        self.max_jobs = {Resource.GPU: max_gpu_jobs, Resource.CPU: max_cpu_jobs}
        self.cpu_threads = cpu_threads or default_cpu_threads()
        self._records: dict[str, JobRecord] = {r.id: r for r in self.history.load()}
        self._tasks: dict[str, Task] = {}
        self._workers: dict[str, _Worker] = {}
        self._tokens: dict[str, CancelToken] = {}
        self._metrics: dict[str, MetricHistory] = {}
        self._logs: dict[str, list[str]] = {}
        self._switch_interval: float | None = None
        self._worker_event.connect(self._on_event)
        self._worker_log.connect(self._on_log)
        self._worker_progress.connect(self._on_progress)
        self._worker_done.connect(self._finish)
        self.history.save(self.records)

    # ------------------------------------------------------------------ queries
    @property
    def records(self) -> list[JobRecord]:
        return list(self._records.values())

    def record(self, job_id: str) -> JobRecord:
        try:
            return self._records[job_id]
        except KeyError:
            raise JobError(f"no job {job_id!r}") from None

    def active_jobs(self) -> list[JobRecord]:
        return [r for r in self._records.values() if r.state.active]

    def running_jobs(self) -> list[JobRecord]:
        return [r for r in self._records.values() if r.state in (JobState.RUNNING, JobState.CANCELLING)]

    def metrics(self, job_id: str) -> MetricHistory:
        """The job's metric history (read from disk the first time for past jobs)."""
        if job_id not in self._metrics:
            self._metrics[job_id] = self.history.read_metrics(job_id)
        return self._metrics[job_id]

    def log_lines(self, job_id: str) -> list[str]:
        if job_id not in self._logs:
            self._logs[job_id] = self.history.read_log(job_id)
        return self._logs[job_id]

    # ------------------------------------------------------------------ submitting
    def submit_training(self, config: Any, title: str | None = None, *, force: bool = False) -> JobRecord:
        """Queue a training of `config` (a `TrainConfig`); returns its record. `force` claims a
        non-empty run folder lesion-studio did not make (`lesion-studio train --force`)."""
        from lesion_studio.core.device import cuda_available

        device = config.run.device
        resource = Resource.GPU if device == "cuda" or (device == "auto" and cuda_available()) else Resource.CPU
        record = JobRecord(
            id=new_job_id(), kind=JobKind.TRAIN,
            title=title or f"train {config.family} on {Path(config.run.dataset).name}",
            resource=resource, config=config.to_dict(), out_dir=config.run.out_dir,
            total_steps=config.run.steps,
        )
        return self._add(record, lambda ctx: run_training(ctx, self.cpu_threads, force))

    def submit_task(self, kind: JobKind, title: str, task: Task, *, resource: Resource = Resource.CPU,
                    config: dict[str, Any] | None = None, out_dir: str = "") -> JobRecord:
        """Queue any function `task(ctx)` (evaluate, export): it reads `ctx.cancelled`,
        calls `ctx.log(...)` and `ctx.progress(done, total)`; its return value is ignored."""
        record = JobRecord(id=new_job_id(), kind=kind, title=title, resource=resource,
                           config=dict(config or {}), out_dir=out_dir)
        return self._add(record, task)

    def _add(self, record: JobRecord, task: Task) -> JobRecord:
        self._records[record.id] = record
        self._tasks[record.id] = task
        self._metrics[record.id] = MetricHistory()
        self._logs[record.id] = []
        self._save()
        self.jobAdded.emit(record.id)
        self._schedule()
        return record

    # ------------------------------------------------------------------ control
    def cancel(self, job_id: str) -> None:
        """Queued: cancelled at once. Running: cancelling until the trainer has written its
        cancel checkpoint at the next step boundary."""
        record = self.record(job_id)
        if record.state is JobState.QUEUED:
            record.state = JobState.CANCELLED
            record.finished_at = time.time()
            self._save()
            self.jobChanged.emit(job_id)
        elif record.state is JobState.RUNNING:
            record.state = JobState.CANCELLING
            self._tokens[job_id].cancel()
            self._append_log(job_id, "cancel requested: stopping at the next step")
            self.jobChanged.emit(job_id)

    def resume(self, job_id: str) -> JobRecord:
        """Queue a cancelled or failed training again, from its last checkpoint."""
        record = self.record(job_id)
        if not record.can_resume:
            raise JobError(f"job {record.title!r} cannot be resumed (state {record.state.value}, "
                           f"checkpoint {record.checkpoint or 'none'})")
        record.resume_from = record.checkpoint
        record.state = JobState.QUEUED
        record.error = record.error_type = record.hint = None
        record.finished_at = None
        record.step = record.checkpoint_step
        record.eta_s = None
        metrics = self.metrics(job_id)
        metrics.truncate_after(record.checkpoint_step)
        self.history.rewrite_metrics(job_id, metrics)
        self._tasks[job_id] = lambda ctx: run_training(ctx, self.cpu_threads)
        self._append_log(job_id, f"resume queued from {record.checkpoint} (step {record.checkpoint_step})")
        self._save()
        self.jobChanged.emit(job_id)
        self._schedule()
        return record

    def remove(self, job_id: str) -> None:
        """Forget a finished job (its run folder and checkpoints stay on disk)."""
        record = self.record(job_id)
        if record.state.active:
            raise JobError(f"job {record.title!r} is {record.state.value}; cancel it first")
        del self._records[job_id]
        self._metrics.pop(job_id, None)
        self._logs.pop(job_id, None)
        self._save()
        self.jobRemoved.emit(job_id)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel every job and wait for the workers (the app is closing). True when all stopped."""
        for record in self.active_jobs():
            self.cancel(record.id)
        deadline = time.monotonic() + timeout_ms / 1000
        ok = True
        for worker in list(self._workers.values()):
            left = max(0, int((deadline - time.monotonic()) * 1000))
            ok = worker.wait(left) and ok
        # Deliver the workers' last queued signals now, while this manager is alive: PySide
        # queues them to its own receiver objects, not to `self`, so all posted events are sent.
        QCoreApplication.sendPostedEvents()
        for job_id, worker in list(self._workers.items()):
            if worker.isFinished():
                self._finish(job_id)
        self._save()
        return ok

    def wait_idle(self, timeout_ms: int = 60_000) -> bool:
        """Process events until no job is queued or running (tests, scripts)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while self.active_jobs() and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return not self.active_jobs()

    # ------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        busy = {Resource.GPU: 0, Resource.CPU: 0}
        for record in self.running_jobs():
            busy[record.resource] += 1
        for record in list(self._records.values()):
            if record.state is not JobState.QUEUED or record.id not in self._tasks:
                continue
            if busy[record.resource] >= self.max_jobs[record.resource]:
                continue
            busy[record.resource] += 1
            self._start(record)

    def _start(self, record: JobRecord) -> None:
        if not self._workers:  # hand the GIL back to the UI thread within 1 ms while jobs run
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, UI_SWITCH_INTERVAL_S))
        token = CancelToken()
        record.state = JobState.RUNNING
        record.phase = "starting" if record.kind is JobKind.TRAIN else ""
        record.started_at = time.time()
        record.attempts += 1
        ctx = JobContext(self, record, token)
        ensure_torch_imported()  # never first-import torch in the worker thread (crashes with Qt)
        worker = _Worker(self, ctx, self._tasks[record.id])
        self._tokens[record.id] = token
        self._workers[record.id] = worker
        self._save()
        self.jobChanged.emit(record.id)
        worker.start()

    def _finish(self, job_id: str) -> None:
        worker = self._workers.pop(job_id, None)
        token = self._tokens.pop(job_id, None)
        if worker is None:
            return  # already handled
        worker.wait()
        record = self._records.get(job_id)
        if record is None:
            return
        now = time.time()
        if record.started_at is not None:
            record.elapsed_s += now - record.started_at
        record.finished_at = now
        record.eta_s = None
        record.phase = ""
        if worker.error is not None:
            record.state = JobState.FAILED
            record.error_type, record.error, record.hint = explain_failure(worker.error)
        elif getattr(worker.result, "cancelled", token is not None and token.cancelled):
            record.state = JobState.CANCELLED
        else:
            record.state = JobState.DONE
        record.resume_from = None
        self._append_log(job_id, f"job {record.state.value}" + (f": {record.error}" if record.error else ""),
                         to_file=True)
        # The thread has finished (waited above): release it now, deterministically, instead of
        # a deferred delete that may race with the manager's own destruction.
        worker.setParent(None)
        if not self._workers and self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
        self._save()
        self.jobChanged.emit(job_id)
        self._schedule()

    # ------------------------------------------------------------------ worker signals (UI thread)
    def _on_event(self, job_id: str, event: object) -> None:
        record = self._records.get(job_id)
        if record is None:
            return
        metrics = self.metrics(job_id)
        save = False
        if isinstance(event, OutputFolder):
            record.out_dir = event.path
            save = True
        elif isinstance(event, PhaseEvent):
            record.phase = event.phase
        elif isinstance(event, TrainStarted):
            record.total_steps = event.total_steps
            record.step = event.start_step
        elif isinstance(event, StepEvent):
            record.phase = ""
            record.it_per_s = event.it_per_s
            record.step, record.total_steps = event.step, event.total_steps
            record.eta_s = event.eta_s if event.eta_s == event.eta_s and event.eta_s != float("inf") else None
            metrics.add("step", event.step, step_row(event))
        elif isinstance(event, ValidationEvent):
            metrics.add("val", event.step, event.metrics)
            if event.criterion:  # the dashboard shows what picks the best checkpoint, and where
                record.selection = {**record.selection, "criterion": event.criterion}
                if event.is_best:
                    record.selection.update(best_step=event.step, best_value=event.metrics.get(event.criterion))
        elif isinstance(event, CheckpointEvent):
            if event.reason == "best":
                record.best_checkpoint = event.path
            else:
                record.checkpoint, record.checkpoint_step = event.path, event.step
            save = True
        elif isinstance(event, TrainFinished):
            record.step = event.step
            record.checkpoint, record.checkpoint_step = event.checkpoint, event.step
            record.best_checkpoint = event.best_checkpoint
            record.best_metrics = dict(event.best_metrics)
            if event.selection:
                record.selection = dict(event.selection)
            save = True
        if save:
            self._save()
        if isinstance(event, OutputFolder):
            self.jobChanged.emit(job_id)
            return
        self.jobEvent.emit(job_id, event)
        self.jobChanged.emit(job_id)

    def _on_progress(self, job_id: str, done: int, total: int, eta_s: float) -> None:
        record = self._records.get(job_id)
        if record is None:
            return
        record.step, record.total_steps = done, total
        record.eta_s = None if eta_s < 0 else eta_s
        self.jobChanged.emit(job_id)

    def _on_log(self, job_id: str, line: str) -> None:
        self.log_lines(job_id).append(line)
        self.jobLog.emit(job_id, line)

    def _append_log(self, job_id: str, line: str, to_file: bool = True) -> None:
        if to_file:
            log = AppendLog(self.history.log_path(job_id))
            log.write(line)
            log.close()
        self._on_log(job_id, line)

    def _save(self) -> None:
        self.history.save(self.records)

