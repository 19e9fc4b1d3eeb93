"""Job records, the persisted history, metric history and failure explanations (Qt-free)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.jobs import (
    JobHistory,
    JobKind,
    JobRecord,
    JobState,
    MetricHistory,
    Resource,
    explain_failure,
    format_duration,
)


def _record(job_id: str, state: JobState, **kw) -> JobRecord:
    return JobRecord(id=job_id, kind=JobKind.TRAIN, title=f"job {job_id}", state=state, **kw)


def test_history_round_trip_in_the_user_data_dir(tmp_path: Path) -> None:
    history = JobHistory()
    assert history.root.parent.name == "data"  # LESION_STUDIO_HOME/data/jobs
    done = _record("a", JobState.DONE, resource=Resource.GPU, best_metrics={"masked_psnr": 25.0}, step=30,
                   total_steps=30, checkpoint=str(tmp_path / "final"))
    history.save([done, _record("b", JobState.CANCELLED)])
    loaded = JobHistory().load()
    assert [r.id for r in loaded] == ["a", "b"]
    assert loaded[0] == done
    assert loaded[0].fraction == 1.0
    assert not list(history.root.glob("*.tmp"))  # atomic write leaves no temp file


def test_jobs_left_running_by_a_killed_app_come_back_failed_and_resumable(tmp_path: Path) -> None:
    ckpt = tmp_path / "step_0000010"
    ckpt.with_name(ckpt.name + ".json").write_text("{}")
    history = JobHistory(tmp_path / "jobs")
    history.save([_record("r", JobState.RUNNING, started_at=1.0, checkpoint=str(ckpt)),
                  _record("q", JobState.QUEUED)])
    running, queued = history.load()
    assert running.state is JobState.FAILED and "interrupted" in running.error and running.can_resume
    assert queued.state is JobState.FAILED and "queued" in queued.error and not queued.can_resume


def test_a_corrupt_history_line_does_not_hide_the_others(tmp_path: Path) -> None:
    history = JobHistory(tmp_path)
    history.save([_record("a", JobState.DONE)])
    with history.path.open("a") as fh:
        fh.write("{not json\n")
        fh.write(json.dumps(_record("b", JobState.DONE).to_dict()) + "\n")
    assert [r.id for r in history.load()] == ["a", "b"]


def test_metric_history_series_csv_truncate_and_torn_lines(tmp_path: Path) -> None:
    metrics = MetricHistory()
    calls = []
    metrics.changed.connect(lambda: calls.append(1))
    for step in (1, 2, 3):
        metrics.add("step", step, {"l1": 1.0 / step, "lr_generator": 1e-3})
    metrics.add("val", 3, {"masked_psnr": 21.5})
    assert metrics.series("step", "l1") == ([1, 2, 3], [1.0, 0.5, 1 / 3])
    assert metrics.names("step") == ["l1", "lr_generator"]
    assert len(calls) == 4
    out = metrics.to_csv(tmp_path / "m.csv")
    rows = list(csv.DictReader(out.open()))
    assert rows[0].keys() == {"kind", "step", "l1", "lr_generator", "masked_psnr"}
    assert rows[-1]["masked_psnr"] == "21.5" and rows[0]["masked_psnr"] == ""
    metrics.truncate_after(2)
    assert metrics.series("step", "l1")[0] == [1, 2] and metrics.series("val", "masked_psnr") == ([], [])

    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"kind": "step", "step": 1, "l1": 0.5}) + "\n" + '{"kind": "st')
    assert len(MetricHistory.load(path)) == 1


def test_failures_carry_their_cause_and_a_hint() -> None:
    class OutOfMemoryError(RuntimeError):
        pass

    kind, reason, hint = explain_failure(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert kind == "OutOfMemoryError" and "CUDA out of memory" in reason and "batch_size" in hint
    kind, reason, hint = explain_failure(ConfigError("invalid dataset:\n  error: x", Path("/d/dataset.json")))
    assert kind == "ConfigError" and "/d/dataset.json" in reason and "dataset" in hint
    kind, reason, _ = explain_failure(ValueError("boom"))
    assert reason == "ValueError: boom"


def test_format_duration() -> None:
    assert format_duration(None) == "–" and format_duration(float("inf")) == "–"
    assert format_duration(65) == "1:05" and format_duration(3725) == "1:02:05"


def test_core_jobs_stays_qt_free() -> None:
    assert "lesion_studio.core.jobs" in sys.modules
    import subprocess

    code = "import sys, lesion_studio.core.jobs; assert not any(m.startswith(('PySide6', 'torch')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
