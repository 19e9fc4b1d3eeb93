"""Evaluate and batch-export jobs from the GUI job manager, and the experiment dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from lesion_studio.core.jobs import JobState
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.trainer import Trainer
from tests.models.conftest import tiny_config


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom_jobs")
    generate_phantom_dataset(root, "chest", 12, seed=3, size_px=64)
    return root


def _wait_done(qtbot, ui, record, timeout_ms: int = 120_000):
    qtbot.waitUntil(lambda: ui.manager.record(record.id).state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED),
                    timeout=timeout_ms)
    return ui.manager.record(record.id)


def test_evaluate_job_writes_results_that_the_dashboard_opens(window, qtbot, phantom, tmp_path: Path) -> None:
    config = tmp_path / "experiment.toml"
    config.write_text(f"""
[experiment]
name = "gui"
task = "segmentation"
dataset = "{phantom}"
out_dir = "{tmp_path / 'out'}"
folds = 2
seed = 0
synthetic_generator = "phantom_painter"
[model]
arch = "unet"
base_channels = 4
depth = 2
image_size_px = 64
[training]
epochs = 1
batch_size = 4
[[conditions]]
name = "real"
[[conditions]]
name = "real+synthetic"
synthetic_count = 4
""")
    ui = window.jobs_ui
    assert ui.evaluate_action in ui.menu.actions()
    ui.ask_open_path = lambda title, file_filter: str(config)
    record = ui.open_evaluation()
    done = _wait_done(qtbot, ui, record)
    assert done.state == JobState.DONE, done.error
    results = tmp_path / "out" / "results.json"
    assert results.is_file()
    assert any("results:" in line for line in ui.manager.log_lines(record.id))
    dashboard = ui.show_results(results)
    assert dashboard is not None and dashboard.isVisible()
    dashboard.close()


def test_bad_experiment_config_fails_with_its_reason(window, qtbot, tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[experiment]\nname = 'x'\n")
    record = window.jobs_ui.start_evaluation(config)
    done = _wait_done(qtbot, window.jobs_ui, record)
    assert done.state == JobState.FAILED
    assert "broken.toml" in (done.error or "") or "dataset" in (done.error or "")


def test_batch_export_job_runs_and_cancel_keeps_finished_items(window, qtbot, phantom, tmp_path: Path) -> None:
    Trainer(tiny_config("texture", phantom, tmp_path / "texture", steps=2, num_threads=1)).run()
    out = tmp_path / "export"
    config = tmp_path / "export.toml"
    config.write_text(f"""
seed = 5
[input]
dataset = "{phantom}"
[synthesis]
per_image = 1
[models]
inpaint = "{tmp_path / 'texture' / 'final'}"
device = "cpu"
[output]
dir = "{out}"
formats = ["png"]
""")
    ui = window.jobs_ui
    record = ui.start_export(config)
    done = _wait_done(qtbot, ui, record)
    assert done.state == JobState.DONE, done.error
    assert (out / "manifest.jsonl").is_file() or any(out.rglob("*.png"))
    assert any("written" in line for line in ui.manager.log_lines(record.id))
