"""The reader-study results dashboard on a real analysis of a small study: plots, tables, exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.reader_study.analysis import analyze_study
from lesion_studio.widgets.reader_results import ReaderResultsDashboard, verdict_sentence
from tests._reader_study import make_key, make_study, read_all


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """24 real CT cases (12 called real, 12 synthetic by the key), two humans and a machine."""
    folder = make_study(tmp_path_factory.mktemp("rr") / "study", 24)
    key = make_key(folder)
    read_all(folder, "alice", 0.7, seed=1)
    read_all(folder, "bob", 0.55, seed=2)
    read_all(folder, "machine-cnn", 0.8, seed=3)
    return analyze_study(folder, key, n_bootstrap=200)


@pytest.fixture
def dashboard(qtbot, results) -> ReaderResultsDashboard:
    dash = ReaderResultsDashboard()
    qtbot.addWidget(dash)
    dash.resize(1366, 860)
    dash.set_results(results)
    dash.show()
    qtbot.waitExposed(dash)
    return dash


def _table_text(table) -> list[list[str]]:
    return [[table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount())]
            for r in range(table.rowCount())]


def test_dashboard_renders_every_part(dashboard: ReaderResultsDashboard, results: dict) -> None:
    assert "3 reader(s)" in dashboard.title.text() and "12 real, 12 synthetic" in dashboard.title.text()
    pooled = results["pooled"]
    verdict = dashboard.verdict.text()
    assert verdict == verdict_sentence(results)
    assert verdict.startswith(results["verdict"].split(" (")[0].capitalize() + ": accuracy ")
    assert f"{100 * pooled['accuracy']:.0f} %" in verdict and "power to detect 65 %" in verdict

    rows = _table_text(dashboard.reader_table)
    assert [r[0] for r in rows] == ["alice", "bob", "machine-cnn (machine)", "pooled"]
    assert rows[0][1] == "24" and rows[3][1] == "48"
    assert rows[0][2].startswith(f"{100 * results['readers']['alice']['accuracy']:.0f} % [")

    # ROC: one curve per reader and the pooled one, plus the chance diagonal.
    curves = [item for item in dashboard.roc_plot.getPlotItem().listDataItems()]
    assert len(curves) == 1 + 3 + 1
    legend = [label.text for _, label in dashboard.roc_plot.getPlotItem().legend.items]
    assert f"pooled ({pooled['auc']:.2f})" in legend

    confusion = _table_text(dashboard.confusion)
    c = pooled["confusion"]
    assert confusion[0][1:3] == [str(c["real"]["real"]), str(c["real"]["synthetic"])]
    assert confusion[1][1:3] == [str(c["synthetic"]["real"]), str(c["synthetic"]["synthetic"])]
    assert confusion[2][3] == "48"

    kappa = _table_text(dashboard.kappa_table)
    assert [r[0] for r in kappa] == ["alice – bob", "alice – machine-cnn", "bob – machine-cnn",
                                     "Fleiss: alice, bob"]

    model_ticks = [t for _, t in dashboard.model_plot.getAxis("bottom")._tickLevels[0]]
    assert [t.split("\n")[0] for t in model_ticks] == ["real-nodule", "texture-gan"]
    size_ticks = [t for _, t in dashboard.size_plot.getAxis("bottom")._tickLevels[0]]
    assert [t.split("\n")[0] for t in size_ticks] == ["3-6 mm", "6-10 mm", "10-20 mm"]


def test_breakdowns_follow_the_chosen_reader(dashboard: ReaderResultsDashboard, results: dict) -> None:
    dashboard.subject.setCurrentIndex(dashboard.subject.findData("alice"))
    c = results["readers"]["alice"]["confusion"]
    assert _table_text(dashboard.confusion)[0][1] == str(c["real"]["real"])
    assert dashboard.confusion_box.title() == "Confusion — alice"
    assert _table_text(dashboard.confusion)[2][3] == "24"


def test_exports_png_svg_csv(dashboard: ReaderResultsDashboard, tmp_path: Path) -> None:
    png = dashboard.export_png(tmp_path / "r.png")
    svg = dashboard.export_svg(tmp_path / "r.svg")
    table = dashboard.export_csv(tmp_path / "r.csv")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert svg.stat().st_size > 1000 and "<svg" in svg.read_text(encoding="utf-8")
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert {r["reader"] for r in rows} == {"alice", "bob", "machine-cnn", "all human readers"}
    assert {r["breakdown"] for r in rows} == {"all", "model", "size_bin"}


def test_a_single_reader_and_a_saved_results_file(qtbot, tmp_path: Path) -> None:
    folder = make_study(tmp_path / "study", 6)
    key = make_key(folder)
    read_all(folder, "alice", 0.5, seed=4)
    results = analyze_study(folder, key, n_bootstrap=50)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text(json.dumps(results))
    dash = ReaderResultsDashboard()
    qtbot.addWidget(dash)
    dash.load(tmp_path / "out")
    assert "(alice, 6 calls" in dash.verdict.text()
    assert _table_text(dash.kappa_table)[0][0].startswith("one reader")
    with pytest.raises(ConfigError):
        dash.load(tmp_path / "study" / "study.json")


def test_no_answers_yet(qtbot, tmp_path: Path) -> None:
    folder = make_study(tmp_path / "study", 4)
    key = make_key(folder)
    results = analyze_study(folder, key, n_bootstrap=10)
    dash = ReaderResultsDashboard()
    qtbot.addWidget(dash)
    dash.set_results(results)
    assert dash.verdict.text().startswith("No answers yet")
    assert "no reader has answered" in dash.warnings.text()
