"""JobManager: tiny trainings in QThreads run, cancel with a checkpoint, resume, fail with a reason."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lesion_studio.app.job_manager import JobManager
from lesion_studio.core.jobs import JobHistory, JobKind, JobState, Resource
from lesion_studio.models.checkpoint import load_checkpoint
from lesion_studio.models.progress import SampleEvent, StepEvent
from tests.app._jobs_helpers import phantom_dataset, tiny_config  # noqa: F401


@pytest.fixture
def manager(qtbot):
    m = JobManager(cpu_threads=1)
    yield m
    m.shutdown(30_000)


def test_tiny_training_runs_to_done_with_metrics_log_and_history(manager, qtbot, phantom_dataset, tmp_path):
    events = []
    manager.jobEvent.connect(lambda job_id, event: events.append(event))
    record = manager.submit_training(tiny_config(phantom_dataset, tmp_path / "run", steps=20))
    assert record.state in (JobState.QUEUED, JobState.RUNNING) and record.resource is Resource.CPU
    qtbot.waitUntil(lambda: record.state.finished, timeout=60_000)
    assert record.state is JobState.DONE, record.error
    assert record.step == 20 and record.checkpoint.endswith("final") and record.best_checkpoint
    assert record.elapsed_s > 0 and record.attempts == 1
    steps, losses = manager.metrics(record.id).series("step", "l1")
    assert steps == list(range(1, 21)) and all(v > 0 for v in losses)
    assert manager.metrics(record.id).series("val", "masked_psnr")[0] == [10, 20]
    assert any(isinstance(e, SampleEvent) for e in events) and any(isinstance(e, StepEvent) for e in events)
    log = manager.log_lines(record.id)
    assert any("validation" in line for line in log) and any("final checkpoint" in line for line in log)
    # persisted: history, log file and metrics file
    again = {r.id: r for r in JobHistory().load()}[record.id]
    assert again.state is JobState.DONE and again.checkpoint == record.checkpoint
    assert JobHistory().read_log(record.id) == log
    assert len(JobHistory().read_metrics(record.id)) == len(manager.metrics(record.id))


def test_cancel_leaves_a_checkpoint_that_resume_continues_from(manager, qtbot, phantom_dataset, tmp_path):
    record = manager.submit_training(tiny_config(phantom_dataset, tmp_path / "run", steps=150, checkpoint_every=0,
                                                 val_every=0, sample_every=0))
    qtbot.waitUntil(lambda: record.step >= 5, timeout=60_000)
    manager.cancel(record.id)
    assert record.state is JobState.CANCELLING
    qtbot.waitUntil(lambda: record.state.finished, timeout=60_000)
    assert record.state is JobState.CANCELLED
    stopped = record.checkpoint_step
    assert 5 <= stopped < 150 and "cancelled_step" in record.checkpoint and record.can_resume
    assert load_checkpoint(record.checkpoint).step == stopped

    manager.resume(record.id)
    assert record.state in (JobState.QUEUED, JobState.RUNNING)
    # finish quickly: the resumed attempt trains the remaining steps
    qtbot.waitUntil(lambda: record.state.finished, timeout=120_000)
    assert record.state is JobState.DONE, record.error
    assert record.attempts == 2 and record.step == 150
    steps, _ = manager.metrics(record.id).series("step", "l1")
    assert steps == list(range(1, 151))  # no gap and no duplicate across the cancel
    log = manager.log_lines(record.id)
    assert any(line.startswith("resuming from") and "cancelled_step" in line for line in log)
    assert json.loads(Path(record.checkpoint + ".json").read_text())["step"] == 150


def test_broken_dataset_fails_with_the_validators_reason(manager, qtbot, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dataset.json").write_text("{ not json")
    record = manager.submit_training(tiny_config(broken, tmp_path / "run"))
    qtbot.waitUntil(lambda: record.state.finished, timeout=30_000)
    assert record.state is JobState.FAILED
    assert record.error_type == "ConfigError" and "dataset.json" in record.error and record.hint
    assert not record.can_resume
    assert any(line.startswith("error:") for line in manager.log_lines(record.id))


def test_cpu_slots_queue_tasks_and_queued_jobs_cancel_at_once(qtbot):
    manager = JobManager(max_cpu_jobs=1, cpu_threads=1)
    release = threading.Event()
    order = []

    def task(name):
        def run(ctx):
            order.append(name)
            ctx.progress(1, 2)
            ctx.log(f"{name} started")
            while not release.is_set() and not ctx.cancelled:
                release.wait(0.01)
            ctx.progress(2, 2)
        return run

    a = manager.submit_task(JobKind.EVALUATE, "eval a", task("a"))
    b = manager.submit_task(JobKind.EXPORT, "export b", task("b"))
    c = manager.submit_task(JobKind.EXPORT, "export c", task("c"))
    assert a.state is JobState.RUNNING and b.state is JobState.QUEUED
    manager.cancel(c.id)
    assert c.state is JobState.CANCELLED
    release.set()
    qtbot.waitUntil(lambda: b.state.finished, timeout=10_000)
    assert (a.state, b.state) == (JobState.DONE, JobState.DONE) and order == ["a", "b"]
    assert b.step == 2 and b.total_steps == 2 and "b started" in manager.log_lines(b.id)
    manager.shutdown()


def test_out_of_memory_is_reported_with_a_hint(qtbot):
    manager = JobManager(cpu_threads=1)

    class OutOfMemoryError(RuntimeError):
        pass

    def task(ctx):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    record = manager.submit_task(JobKind.TRAIN, "oom", task, resource=Resource.GPU)
    qtbot.waitUntil(lambda: record.state.finished, timeout=10_000)
    assert record.state is JobState.FAILED and record.error_type == "OutOfMemoryError"
    assert "batch_size" in record.hint and "CUDA out of memory" in record.error
    assert any(line.startswith("hint:") for line in manager.log_lines(record.id))


def test_shutdown_cancels_running_training_with_a_checkpoint(qtbot, phantom_dataset, tmp_path):
    manager = JobManager(cpu_threads=1)
    record = manager.submit_training(tiny_config(phantom_dataset, tmp_path / "run", steps=10_000, val_every=0,
                                                 sample_every=0, checkpoint_every=0))
    qtbot.waitUntil(lambda: record.step >= 2, timeout=60_000)
    assert manager.shutdown(60_000)
    assert record.state is JobState.CANCELLED and record.can_resume
    assert {r.id: r for r in JobHistory().load()}[record.id].state is JobState.CANCELLED
