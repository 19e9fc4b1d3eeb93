"""The experiment dashboard on a tiny real experiment: plots, sortable table, CD, exports.

Set LESION_STUDIO_SCREENSHOTS=1 to also write docs/screenshot_experiment_dashboard.png.
"""

import csv
import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.experiments import ConditionConfig, ExperimentConfig, run_experiment
from lesion_studio.widgets.experiment_dashboard import ExperimentDashboard, open_experiment_dashboard

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Three conditions × two folds on 64 px phantoms (synthetic = phantom painter, not a GAN)."""
    root = tmp_path_factory.mktemp("dash")
    generate_phantom_dataset(root / "data", "chest", 10, seed=5, size_px=64)
    cfg = ExperimentConfig(
        name="tiny phantom study", dataset=root / "data", out_dir=root / "out", folds=2, image_size_px=64,
        arch="unet", base_channels=8, depth=3, norm="instance", epochs=3, batch_size=4, lr=1e-2,
        synthetic_generator="phantom_painter",
        conditions=(ConditionConfig("real"), ConditionConfig("real+syn8", synthetic_count=8),
                    ConditionConfig("real+syn8+aug", synthetic_count=8, classic_augmentation=True)))
    run_experiment(cfg)
    return root / "out" / "results.json"


def test_dashboard_shows_and_exports(qtbot, results, tmp_path):
    dash = open_experiment_dashboard(results)
    qtbot.addWidget(dash)
    dash.resize(1280, 860)
    dash.show()
    qtbot.waitExposed(dash)
    assert isinstance(dash, ExperimentDashboard)
    assert "tiny phantom study" in dash.title.text()
    # the segmenter's heatmap detector made the detection metrics: the dashboard says it is a baseline
    assert "heatmap (fast baseline, not comparable with the papers' detectors)" in dash.detector_label.text()
    # one row per condition, significance legend, numeric sorting by clicking a header
    assert dash.table.rowCount() == 3
    col = dash.table_metrics().index("region_f1") + 1
    dash.table.sortItems(col, Qt.SortOrder.DescendingOrder)
    values = [dash.table.item(r, col).data(Qt.ItemDataRole.UserRole) for r in range(3)]
    assert values == sorted(values, reverse=True)
    # three conditions: the CD summary shows Friedman's result (or why it was skipped)
    dash.metric_box.setCurrentText("region_f1")
    assert "region_f1" in dash.cd_caption.text()
    assert len(dash.froc_plot.plotItem.listDataItems()) >= 3
    png = dash.export_png(tmp_path / "dash.png")
    svg = dash.export_svg(tmp_path / "dash.svg")
    table = dash.export_csv(tmp_path / "dash.csv")
    assert png.stat().st_size > 10_000
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    rows = list(csv.DictReader(open(table)))
    assert {r["condition"] for r in rows} == {"real", "real+syn8", "real+syn8+aug"}
    if os.environ.get("LESION_STUDIO_SCREENSHOTS"):
        dash.export_png(DOCS / "screenshot_experiment_dashboard.png")


def test_dashboard_refuses_other_files(qtbot, tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"format": "something-else"}')
    dash = ExperimentDashboard()
    qtbot.addWidget(dash)
    with pytest.raises(ConfigError):
        dash.load(bad)


def test_dashboard_names_a_box_detector_with_its_backbone_and_initialisation():
    from lesion_studio.models.detectors import detector_description
    from lesion_studio.widgets.experiment_dashboard import detector_label

    text = detector_label({"detector": detector_description("retinanet", "resnet18_fpn")})
    assert text.startswith("RetinaNet") and "resnet18_fpn" in text and "from scratch" in text
    assert detector_label({}).startswith("heatmap (fast baseline")  # results from before box detectors
