"""Training dashboard: curves follow the metric history (coalesced), samples, comparison
overlays, PNG/SVG/CSV export; the New training dialog's validation and parsing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.jobs import MetricHistory
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.widgets.new_training_dialog import NewTrainingDialog
from lesion_studio.widgets.training_dashboard import TrainingDashboard, sample_mosaic


def _history(n: int = 30, scale: float = 1.0) -> MetricHistory:
    h = MetricHistory()
    for step in range(1, n + 1):
        h.add("step", step, {"l1": scale * 10 / step, "g_adv": 1.0, "g_total": scale * 10 / step + 1,
                             "lr_generator": 2e-4, "lr_discriminator": 2e-4, "it_per_s": 40.0})
        if step % 10 == 0:
            h.add("val", step, {"masked_psnr": 20 + step / 10, "masked_ssim": 0.5})
    return h


@pytest.fixture
def dashboard(qtbot):
    d = TrainingDashboard(refresh_interval_ms=10)
    qtbot.addWidget(d)
    d.resize(1200, 500)
    d.show()
    return d


def test_curves_follow_the_history_and_redraws_are_coalesced(dashboard, qtbot):
    history = _history(5)
    dashboard.set_run("run a", history)
    assert dashboard.curve_lengths()["loss_plot/l1"] == 5
    before = dashboard.redraw_count
    with qtbot.waitSignal(dashboard.refreshed, timeout=5_000):
        for step in range(6, 56):
            history.add("step", step, {"l1": 1.0, "g_adv": 1.0, "g_total": 2.0, "lr_generator": 2e-4,
                                       "lr_discriminator": 2e-4, "it_per_s": 40.0})
    lengths = dashboard.curve_lengths()
    assert lengths["loss_plot/l1"] == 55 and lengths["lr_plot/generator"] == 55 and lengths["speed_plot/it/s"] == 55
    assert dashboard.redraw_count - before <= 8  # 50 additions, a handful of (one-plot) redraws
    assert dashboard.metric_combo.currentText() == "" and "val_plot/masked_psnr" not in lengths
    history.add("val", 50, {"masked_psnr": 22.0, "masked_ssim": 0.6})
    dashboard.refresh()
    assert dashboard.metric_combo.currentText() == "masked_psnr"
    assert dashboard.curve_lengths()["val_plot/masked_psnr"] == 1
    dashboard.set_progress(55, 100, 40.0, 1.1, 2.0)
    assert "step 55/100" in dashboard.status_label.text() and "ETA 0:01" in dashboard.status_label.text()
    assert dashboard.loss_plot.viewRange()[0][1] >= 100  # step axis spans the whole run


def test_the_selection_criterion_and_chosen_step_are_shown(dashboard):
    history = _history(30)
    history.add("val", 30, {"masked_psnr": 23.0, "realfake": 0.61})
    dashboard.set_run("run a", history)
    assert dashboard.metric_combo.currentText() == "masked_psnr" and dashboard.selection_label.text() == ""
    dashboard.set_selection({"criterion": "realfake", "best_step": 30, "best_value": 0.61,
                             "note": "model selection: FID unavailable: ...; selecting by realfake instead"})
    assert dashboard.selection_label.text() == "best by realfake: step 30 (0.61)"
    assert "FID unavailable" in dashboard.selection_label.toolTip()
    assert dashboard.metric_combo.findText("realfake") >= 0  # the criterion can be plotted
    dashboard.set_selection({"criterion": "fcn"})  # no best step yet
    assert dashboard.selection_label.text() == "best by fcn"
    dashboard.set_run("run b", _history(5))
    assert dashboard.selection_label.text() == ""


def test_overlays_compare_runs(dashboard):
    dashboard.set_run("run a", _history())
    dashboard.set_overlays([("run b", _history(20, scale=2.0))])
    lengths = dashboard.curve_lengths()
    assert lengths["loss_plot/run b: g_total"] == 20
    assert lengths["val_plot/run b: masked_psnr"] == 2 and lengths["val_plot/masked_psnr"] == 3
    dashboard.metric_combo.setCurrentText("masked_ssim")
    dashboard.refresh()
    assert "val_plot/run b: masked_ssim" in dashboard.curve_lengths()
    dashboard.set_overlays([])
    assert not any(k.startswith("loss_plot/run b") for k in dashboard.curve_lengths())


def test_samples_grid(dashboard):
    images = np.linspace(-1, 1, 12 * 16 * 16, dtype=np.float32).reshape(12, 16, 16)
    dashboard.show_samples(40, images, ("input", "generated", "target") * 4)
    assert dashboard.sample_item.image.shape == (4 * 18 - 2, 3 * 18 - 2)
    assert "step 40" in dashboard.sample_titles.text and "generated" in dashboard.sample_titles.text
    mosaic = sample_mosaic(images[:3], columns=3, gap_px=2)
    assert np.isnan(mosaic[:, 16:18]).all() and np.array_equal(mosaic[:, :16], images[0])


def test_export_png_svg_csv(dashboard, tmp_path):
    dashboard.set_run("run a", _history())
    dashboard.set_overlays([("run b", _history(20, scale=2.0))])
    png = dashboard.export_png(tmp_path / "plots.png", width_px=800)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = dashboard.export_svg(tmp_path / "plots.svg").read_text()
    assert "<svg" in svg and "Losses" in svg and "Validation" in svg
    rows = list(csv.DictReader(dashboard.export_csv(tmp_path / "m.csv").open()))
    assert len(rows) == 33 and {"kind", "step", "l1", "masked_psnr"} <= rows[0].keys()


def test_export_buttons_use_the_replaceable_path_question(dashboard, qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt

    dashboard.set_run("run a", _history())
    monkeypatch.setattr(dashboard, "ask_export_path", lambda kind: str(tmp_path / f"out.{kind}"))
    for button in (dashboard.png_button, dashboard.svg_button, dashboard.csv_button):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.png", "out.svg"]


# -- new training dialog ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dialog_ds")
    generate_phantom_dataset(out, "chest", 4, size_px=64)
    return out


def test_dialog_builds_the_config_with_paper_defaults(qtbot, small_dataset, tmp_path):
    dialog = NewTrainingDialog(out_root=tmp_path)
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled()
    report = dialog.set_dataset(small_dataset)
    assert report.ok and ok.isEnabled()
    dialog.set_family("cascade")
    assert dialog.field_text("model.l1_weight") == "50.0"  # P0 Eq. 7 default shown
    assert dialog.field_text("model.stage1_steps") == ""  # None: chosen by the trainer
    dialog.set_field("model.base_channels", "16")
    dialog.set_field("model.lr_g", "1e-4")
    dialog.set_field("model.dilations", "[2, 4]")
    dialog.set_field("run.steps", "500")
    dialog.set_device("cpu")
    config = dialog.config()
    assert config.family == "cascade" and config.model.base_channels == 16 and config.model.lr_g == 1e-4
    assert config.model.dilations == [2, 4] and config.model.stage1_steps is None
    assert config.run.steps == 500 and config.run.device == "cpu"
    assert config.run.dataset == str(small_dataset)
    assert Path(config.run.out_dir) == tmp_path / f"cascade_{small_dataset.name}"


def test_dialog_reports_bad_values_by_key(qtbot, small_dataset, tmp_path):
    dialog = NewTrainingDialog(out_root=tmp_path, dataset=small_dataset, family="pix2pix")
    qtbot.addWidget(dialog)
    dialog.set_field("model.batch_size", "zero")
    with pytest.raises(ConfigError, match="model.batch_size"):
        dialog.config()
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted and "model.batch_size" in dialog.error_label.text()
    dialog.set_field("model.batch_size", "0")
    dialog.accept()
    assert "model.batch_size" in dialog.error_label.text()  # range check of the config module


def test_dialog_lists_every_dataset_problem(qtbot, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    dialog = NewTrainingDialog(out_root=tmp_path, dataset=root)
    qtbot.addWidget(dialog)
    assert not dialog.report.ok and dialog.problems.count() == len(dialog.report.problems) >= 1
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    assert "cannot be used" in dialog.report_label.text()


def test_dialog_validates_in_the_background_when_the_folder_is_typed(qtbot, small_dataset, tmp_path):
    dialog = NewTrainingDialog(out_root=tmp_path)
    qtbot.addWidget(dialog)
    dialog.dataset_edit.setText(str(small_dataset))
    with qtbot.waitSignal(dialog.validated, timeout=30_000) as blocker:
        dialog.validate_async()
        assert dialog.report_label.text() == "Validating…"
    assert blocker.args[0].ok and dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()


def test_a_constant_learning_rate_is_plotted_from_zero_to_above_it(dashboard):
    """Auto-range put a constant 2e-4 in the middle of a ±0.5 axis (ticks -400…400 ×0.001)."""
    dashboard.set_run("run a", _history(20))
    low, high = dashboard.lr_plot.viewRange()[1]
    assert low == pytest.approx(0.0, abs=1e-6) and 2e-4 < high < 4e-4
