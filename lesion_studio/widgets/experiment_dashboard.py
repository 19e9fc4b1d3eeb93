"""Experiment dashboard: FROC curves with fold bands, a sortable metric table with
significance marks, size-group recall bars and a critical-difference summary, for any saved
experiment (`results.json` of `models.experiments`). Export PNG / SVG / CSV.

The widget only renders a results file; `open_experiment_dashboard(path)` is the entry
point for the main window and the job manager (when an `evaluate` job finishes).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QMessageBox,
    QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from lesion_studio.core.errors import ConfigError
from lesion_studio.models.detectors import DETECTOR_LABELS
from lesion_studio.models.experiments import KEY_METRICS, load_results
from lesion_studio.widgets.dashboard_export import ask_export_path, widget_svg
from lesion_studio.widgets.experiment_plots import (
    draw_critical_difference, draw_froc, draw_size_groups,
)

def detector_label(doc: dict) -> str:
    """How the results name their detector (with its backbone and initialisation); files from
    before the box detectors used the heatmap one."""
    det = doc.get("detector") or {}
    parts = [det.get("label") or DETECTOR_LABELS["heatmap"]]
    return ", ".join(parts + [str(det[k]) for k in ("backbone", "initialisation") if det.get(k)])


#: Significance mark in the table: p < 0.05 against the baseline (two-sample t-test over folds).
SIGNIFICANCE_MARK = "*"


class _NumericItem(QTableWidgetItem):
    """A table cell that sorts by its number (the mean), not by its text."""

    def __init__(self, text: str, value: float) -> None:
        super().__init__(text)
        self.setData(Qt.ItemDataRole.UserRole, value)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a = self.data(Qt.ItemDataRole.UserRole)
        b = other.data(Qt.ItemDataRole.UserRole)
        a = -math.inf if a is None or (isinstance(a, float) and math.isnan(a)) else a
        b = -math.inf if b is None or (isinstance(b, float) and math.isnan(b)) else b
        return a < b


def _plot(title: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="#14161a")
    plot.setTitle(title, color="#d7dde5", size="10pt")
    plot.setMinimumSize(360, 240)
    return plot


class ExperimentDashboard(QWidget):
    """Renders one experiment results file; `load(path)` switches to another."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc: dict | None = None
        self.path: Path | None = None
        self.title = QLabel("No experiment loaded")
        self.title.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.detector_label = QLabel()  # which detector made the detection metrics (a baseline says so)
        self.detector_label.setWordWrap(True)
        self.metric_box = QComboBox()
        self.metric_box.setToolTip("metric of the critical-difference summary")
        self.metric_box.currentTextChanged.connect(self._draw_cd)
        buttons = []
        for text, slot in (("Open…", self._open_dialog), ("Export PNG…", lambda: self._export("png")),
                           ("Export SVG…", lambda: self._export("svg")), ("Export CSV…", lambda: self._export("csv"))):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.append(b)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(QLabel("CD metric:"))
        top.addWidget(self.metric_box)
        for b in buttons:
            top.addWidget(b)

        self.froc_plot = _plot("FROC per condition (mean, band = fold min–max)")
        self.size_plot = _plot("Region-wise recall by lesion size (P0 §V-D, scaled to image area)")
        self.cd_plot = _plot("Critical-difference summary (Friedman + Nemenyi)")
        self.cd_caption = QLabel()
        self.cd_caption.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table_note = QLabel(f"mean ± SD over folds; {SIGNIFICANCE_MARK} p < 0.05 vs. baseline "
                                 "(two-sample t-test); click a header to sort")

        def boxed(title: str, *widgets: QWidget) -> QGroupBox:
            box = QGroupBox(title)
            lay = QVBoxLayout(box)
            for w in widgets:
                lay.addWidget(w)
            return box

        grid = QGridLayout()
        grid.addWidget(boxed("FROC", self.froc_plot), 0, 0)
        grid.addWidget(boxed("Size groups", self.size_plot), 0, 1)
        grid.addWidget(boxed("Metrics", self.table, self.table_note), 1, 0)
        grid.addWidget(boxed("Ranking", self.cd_plot, self.cd_caption), 1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.detector_label)
        layout.addLayout(grid, 1)
        self.setWindowTitle("Experiment dashboard")

    def sizeHint(self) -> QSize:
        return QSize(1280, 860)

    # -- loading and drawing -------------------------------------------------------------------
    def load(self, path: str | Path) -> None:
        """Load and show a results.json (or its folder); raises `ConfigError` for other files."""
        self.doc = load_results(path)
        self.path = Path(path)
        d = self.doc
        self.title.setText(f"{d.get('name', '?')} — {d.get('task', '?')}, {len(d['conditions'])} conditions, "
                           f"{len({f['fold'] for f in d['folds']})} folds, baseline {d['baseline']}")
        self.detector_label.setText(f"Detector: {detector_label(d)}")
        draw_froc(self.froc_plot, d)
        draw_size_groups(self.size_plot, d)
        self._fill_table()
        metrics = [m for m in KEY_METRICS if any(m in f["metrics"] for f in d["folds"])]
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        self.metric_box.addItems(metrics)
        self.metric_box.blockSignals(False)
        self._draw_cd(self.metric_box.currentText())

    def table_metrics(self) -> list[str]:
        assert self.doc is not None
        present = {m for s in self.doc["summary"].values() for m in s}
        extra = [m for m in ("pixel_precision", "pixel_recall", "region_precision", "p2_precision", "p2_recall",
                             "sens@0.25fp", "sens@1fp", "image_accuracy") if m in present]
        return [m for m in KEY_METRICS if m in present] + extra

    def _fill_table(self) -> None:
        d = self.doc
        metrics = self.table_metrics()
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setRowCount(len(d["conditions"]))
        self.table.setColumnCount(1 + len(metrics))
        self.table.setHorizontalHeaderLabels(["condition"] + metrics)
        for r, name in enumerate(d["conditions"]):
            label = name + (" (baseline)" if name == d["baseline"] else "")
            self.table.setItem(r, 0, QTableWidgetItem(label))
            for c, m in enumerate(metrics, start=1):
                s = d["summary"][name].get(m)
                if s is None:
                    continue
                mark = SIGNIFICANCE_MARK if s.get("significant") else ""
                item = _NumericItem(f"{s['mean']:.3f} ± {s['sd']:.3f}{mark}", s["mean"])
                p = s.get("p_vs_baseline")
                item.setToolTip(f"{m}: 95 % CI [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}], n = {s['n']}"
                                + ("" if p is None or (isinstance(p, float) and math.isnan(p)) else f", p = {p:.3g}"))
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def _draw_cd(self, metric: str) -> None:
        if self.doc is None or not metric:
            return
        caption = draw_critical_difference(self.cd_plot, self.doc, metric)
        sweep_line = (((self.doc.get("sweep") or {}).get("metrics") or {}).get(metric) or {}).get("summary")
        self.cd_caption.setText(caption + (f"\n{sweep_line}" if sweep_line else ""))  # [sweep] experiments

    # -- export -------------------------------------------------------------------------------
    def export_png(self, path: str | Path) -> Path:
        """The whole dashboard as a PNG screenshot."""
        self.grab().save(str(path))
        return Path(path)

    def export_svg(self, path: str | Path) -> Path:
        """The whole dashboard as SVG (vector plots and text)."""
        return widget_svg(self, path)

    def export_csv(self, path: str | Path) -> Path:
        """The summary table: condition, metric, mean, SD, 95 % CI, n, p vs. baseline, significant."""
        assert self.doc is not None
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["condition", "metric", "mean", "sd", "ci95_low", "ci95_high", "n", "p_vs_baseline",
                        "significant"])
            for name in self.doc["conditions"]:
                for m, s in sorted(self.doc["summary"][name].items()):
                    w.writerow([name, m, s["mean"], s["sd"], s["ci95"][0], s["ci95"][1], s["n"],
                                s["p_vs_baseline"], s["significant"]])
        return Path(path)

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open experiment results", "", "Results (results.json *.json)")
        if path:
            try:
                self.load(path)
            except ConfigError as exc:
                QMessageBox.warning(self, "Cannot open experiment", str(exc))

    def _export(self, kind: str) -> None:
        if self.doc is None:
            return
        path = ask_export_path(self, kind, "experiment")
        if path:
            {"png": self.export_png, "svg": self.export_svg, "csv": self.export_csv}[kind](path)


def open_experiment_dashboard(path: str | Path, parent: QWidget | None = None) -> QWidget:
    """A dashboard showing the experiment saved at `path` (results.json or its folder)."""
    dashboard = ExperimentDashboard(parent)
    dashboard.load(path)
    return dashboard
