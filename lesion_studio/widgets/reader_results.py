"""Reader-study results dashboard: verdict, ROC curves, reader table, confusion table,
accuracy by model and by size bin with 95 % CI whiskers, and κ between readers.

It renders the plain results dict of `core.reader_study.analysis.analyze_study` (or a saved
`results.json`); nothing is recomputed here. Export: PNG, SVG (the whole dashboard) and CSV
(the analysis' own table, `analysis.results_csv`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QPushButton,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from lesion_studio.core.errors import ConfigError
from lesion_studio.widgets.dashboard_export import ask_export_path, widget_png, widget_svg
from lesion_studio.widgets.experiment_plots import color

POOLED = "pooled"
CALLS = ("real", "synthetic")
VERDICT_COLORS = {"distinguishable": "#ff8a80", "indistinguishable": "#8bd17c", "inconclusive": "#ffd54a"}
TEXT_COLOR = "#d7dde5"
CHANCE_PEN = pg.mkPen("#8a929c", width=1, style=Qt.PenStyle.DashLine)


def pct(value: float | None) -> str:
    """`0.583` → "58 %"; "–" when undefined."""
    return "–" if value is None else f"{100 * value:.0f} %"


def ci_text(ci: list[float] | None, percent: bool = True) -> str:
    """`[0.44, 0.71]` → "[44–71 %]" (or "[0.44–0.71]")."""
    if not ci:
        return ""
    if percent:
        return f"[{100 * ci[0]:.0f}–{100 * ci[1]:.0f} %]"
    return f"[{ci[0]:.2f}–{ci[1]:.2f}]"


def headline(results: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The stats the verdict is about: the pooled human readers, else the only reader."""
    readers = results.get("readers") or {}
    pooled = results.get("pooled")
    if pooled:
        humans = [name for name, s in readers.items() if s.get("kind") != "machine"]
        return ("pooled human readers" if len(humans) != 1 else humans[0]), pooled
    if len(readers) == 1:
        name, stats = next(iter(readers.items()))
        return name, stats
    return "", None


def verdict_sentence(results: dict[str, Any]) -> str:
    """E.g. "Inconclusive: accuracy 58 % [44–71 %]; power to detect 65 %: 42 % (pooled human readers, 80 calls)"."""
    who, stats = headline(results)
    if stats is None or not stats.get("n"):
        return "No answers yet: nothing to conclude."
    word = str(results.get("verdict") or stats.get("verdict") or "").split(" (")[0]
    target = results.get("target_accuracy", 0.65)
    power = results.get("power_65", stats.get("power_65"))
    return (f"{word.capitalize()}: accuracy {pct(stats['accuracy'])} {ci_text(stats.get('accuracy_ci'))}; "
            f"power to detect {pct(target)}: {pct(power)} ({who}, {stats['n']} calls, "
            f"p = {stats['p_binomial']:.2g} vs. 50 %)")


def verdict_color(results: dict[str, Any]) -> str:
    word = str(results.get("verdict") or "").split(" (")[0]
    return VERDICT_COLORS.get(word, TEXT_COLOR)


def _plot(title: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="#14161a")
    plot.setTitle(title, color=TEXT_COLOR, size="10pt")
    plot.setMinimumSize(300, 220)
    plot.setMenuEnabled(False)
    return plot


def _boxed(title: str, *widgets: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    lay = QVBoxLayout(box)
    lay.setContentsMargins(6, 6, 6, 6)
    for w in widgets:
        lay.addWidget(w)
    return box


def _table(columns: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def draw_roc(plot: pg.PlotWidget, results: dict[str, Any]) -> list[str]:
    """ROC curve of each reader (machines dashed) and of the pooled humans (thick white), with
    the chance diagonal; returns the legend texts in drawing order (names only: the AUCs and
    their CIs are in the readers table)."""
    plot.clear()
    legend = plot.plotItem.legend or plot.addLegend(offset=(-8, -8), labelTextColor=TEXT_COLOR,
                                                    brush=pg.mkBrush(20, 22, 26, 210))
    legend.clear()
    plot.setLabel("bottom", "false-positive rate (real called synthetic)")
    plot.setLabel("left", "true-positive rate (synthetic spotted)")
    plot.setXRange(0, 1, padding=0.03)
    plot.setYRange(0, 1, padding=0.03)
    ticks = [[(v, f"{v:g}") for v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]]
    plot.getAxis("bottom").setTicks(ticks)
    plot.getAxis("left").setTicks(ticks)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.plot([0, 1], [0, 1], pen=CHANCE_PEN)
    names = []
    entries = [(name, stats) for name, stats in (results.get("readers") or {}).items()]
    if results.get("pooled"):
        entries.append((POOLED, results["pooled"]))
    for i, (name, stats) in enumerate(entries):
        roc = stats.get("roc") or {}
        if not roc.get("fpr"):
            continue
        if name == POOLED:
            pen = pg.mkPen("#ffffff", width=3)
            label = "pooled"
        else:
            style = Qt.PenStyle.DashLine if stats.get("kind") == "machine" else Qt.PenStyle.SolidLine
            pen = pg.mkPen(color(i), width=2, style=style)
            label = name
        auc = stats.get("auc")
        text = label if auc is None else f"{label} ({auc:.2f})"
        plot.plot(roc["fpr"], roc["tpr"], pen=pen, symbol="o", symbolSize=5, symbolBrush=pen.color(),
                  symbolPen=None, name=text)
        names.append(text)
    return names


def draw_group_bars(plot: pg.PlotWidget, groups: dict[str, dict[str, Any]], fill: str) -> list[str]:
    """Accuracy per group as bars with 95 % CI whiskers and the 50 % chance line; returns the tick labels."""
    plot.clear()
    names = list(groups)
    plot.addItem(pg.InfiniteLine(pos=0.5, angle=0, pen=CHANCE_PEN))
    plot.setLabel("left", "accuracy (real vs. synthetic)")
    plot.setYRange(0, 1.05, padding=0)
    plot.setXRange(-0.6, max(len(names), 1) - 0.4, padding=0)
    ticks = [(i, f"{name}\n(n = {groups[name].get('n', 0)})") for i, name in enumerate(names)]
    plot.getAxis("bottom").setTicks([ticks])
    plot.getAxis("bottom").setHeight(42)
    if not names:
        note = pg.TextItem("no breakdown", color="#8a929c", anchor=(0.5, 0.5))
        note.setPos(0, 0.5)
        plot.addItem(note)
        return []
    xs, acc, top, bottom = [], [], [], []
    for i, name in enumerate(names):
        g = groups[name]
        a = g.get("accuracy")
        if a is None:
            continue
        lo, hi = g.get("accuracy_ci") or (a, a)
        xs.append(float(i))
        acc.append(float(a))
        top.append(float(hi) - float(a))
        bottom.append(float(a) - float(lo))
    if xs:
        plot.addItem(pg.BarGraphItem(x=xs, height=acc, width=0.6, brush=fill, pen=pg.mkPen("#101216")))
        plot.addItem(pg.ErrorBarItem(x=np.array(xs), y=np.array(acc), top=np.array(top), bottom=np.array(bottom),
                                     beam=0.18, pen=pg.mkPen(TEXT_COLOR, width=1.5)))
        for x, a, t in zip(xs, acc, top):
            label = pg.TextItem(pct(a), color=TEXT_COLOR, anchor=(0.5, 1.0))
            label.setPos(x, min(a + t + 0.01, 1.0))
            plot.addItem(label)
    return [t[1] for t in ticks]


class ReaderResultsDashboard(QWidget):
    """Renders one reader-study results dict; `set_results` or `load(path)` switch to another."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.results: dict[str, Any] | None = None
        self.setWindowTitle("Reader study results")
        self.title = QLabel("No results loaded")
        self.title.setStyleSheet("font-size: 13pt; font-weight: 600;")
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verdict.setToolTip("Indistinguishable: the accuracy's 95 % CI holds 50 % and the study had at least "
                                "80 % power to detect 65 %. Distinguishable: the CI excludes 50 %. "
                                "Otherwise inconclusive.")
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #ffd54a;")
        self.subject = QComboBox()
        self.subject.setToolTip("whose confusion table and breakdowns are shown")
        self.subject.currentIndexChanged.connect(lambda _: self._draw_subject())
        self.export_buttons = []
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(QLabel("Breakdowns of:"))
        top.addWidget(self.subject)
        for text, kind in (("Export PNG…", "png"), ("Export SVG…", "svg"), ("Export CSV…", "csv")):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, k=kind: self._export_dialog(k))
            top.addWidget(button)
            self.export_buttons.append(button)

        self.roc_plot = _plot("ROC: spotting synthetic lesions (AUC)")
        self.model_plot = _plot("Accuracy by model (real cases + that model's)")
        self.size_plot = _plot("Accuracy by lesion size")
        self.reader_table = _table(["reader", "answered", "accuracy [95 % CI]", "sens. / spec.", "AUC [95 % CI]",
                                    "p", "s / case", "verdict"])
        self.reader_table.setToolTip("sensitivity: synthetic cases called synthetic; specificity: real cases "
                                     "called real; p: exact binomial test of the accuracy against 50 %; "
                                     "s / case: mean reading time")
        self.confusion = _table(["truth \\ call", "real", "synthetic", "total"])
        self.confusion.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.confusion.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.confusion.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.confusion.setFixedHeight(124)
        self.confusion_note = QLabel("rows: the truth (answer key); columns: the reader's call; "
                                     "green: correct calls")
        self.confusion_note.setWordWrap(True)
        self.confusion_note.setStyleSheet("color: #aab3bf;")
        self.kappa_table = _table(["readers", "cases", "κ"])
        grid = QGridLayout()
        grid.addWidget(_boxed("ROC (per reader, pooled; dashed diagonal = chance)", self.roc_plot), 0, 0, 2, 1)
        grid.addWidget(_boxed("Readers", self.reader_table), 0, 1, 1, 2)
        self.confusion_box = _boxed("Confusion", self.confusion, self.confusion_note)
        self.confusion_box.layout().addStretch(1)
        grid.addWidget(self.confusion_box, 1, 1)
        kappa_box = _boxed("Agreement between readers (Cohen's κ; Fleiss' κ of the humans)", self.kappa_table)
        grid.addWidget(kappa_box, 1, 2)
        grid.addWidget(_boxed("By model", self.model_plot), 2, 0)
        grid.addWidget(_boxed("By size bin", self.size_plot), 2, 1, 1, 2)
        grid.setColumnStretch(0, 4)
        grid.setColumnStretch(1, 4)
        grid.setColumnStretch(2, 5)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 3)
        grid.setRowStretch(2, 4)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.verdict)
        layout.addWidget(self.warnings)
        layout.addLayout(grid, 1)

    def sizeHint(self) -> QSize:
        return QSize(1366, 860)

    # -- loading and drawing -------------------------------------------------------------------
    def load(self, path: str | Path) -> None:
        """Show a saved results.json (or its folder); `ConfigError` for another file."""
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read reader-study results ({exc})", path) from None
        if not isinstance(doc, dict) or doc.get("format") != "lesion-studio-reader-study-results":
            raise ConfigError("not a lesion-studio reader-study results file", path)
        self.set_results(doc)

    def set_results(self, results: dict[str, Any]) -> None:
        """Render an `analyze_study` result."""
        if not isinstance(results, dict) or "readers" not in results:
            raise ConfigError("not a reader-study results object (no 'readers')")
        self.results = results
        readers = results.get("readers") or {}
        counts = results.get("n_cases") or {}
        cases = ", ".join(f"{n} {t}" for t, n in counts.items() if n)
        self.title.setText(f"{results.get('name', 'Reader study')} — {len(readers)} reader(s); {cases} cases")
        self.setWindowTitle(f"Reader study results — {results.get('name', '')}")
        self.verdict.setText(verdict_sentence(results))
        self.verdict.setStyleSheet(f"font-size: 14pt; font-weight: 600; color: {verdict_color(results)};")
        warnings = results.get("warnings") or []
        self.warnings.setText("\n".join(f"⚠ {w}" for w in warnings))
        self.warnings.setVisible(bool(warnings))
        draw_roc(self.roc_plot, results)
        self._fill_readers()
        self._fill_kappa()
        self.subject.blockSignals(True)
        self.subject.clear()
        if results.get("pooled"):
            self.subject.addItem("pooled human readers", POOLED)
        for name in readers:
            self.subject.addItem(name, name)
        self.subject.blockSignals(False)
        self._draw_subject()

    def subject_stats(self) -> dict[str, Any] | None:
        """The stats chosen in "Breakdowns of" (pooled by default)."""
        if self.results is None:
            return None
        key = self.subject.currentData()
        if key == POOLED:
            return self.results.get("pooled")
        return (self.results.get("readers") or {}).get(key)

    def _draw_subject(self) -> None:
        stats = self.subject_stats()
        if stats is None:
            return
        self._fill_confusion(stats)
        self.confusion_box.setTitle(f"Confusion — {self.subject.currentText()}")
        draw_group_bars(self.model_plot, stats.get("by_model") or {}, "#56B4E9")
        draw_group_bars(self.size_plot, stats.get("by_size_bin") or {}, "#E69F00")

    def _fill_readers(self) -> None:
        assert self.results is not None
        rows = list((self.results.get("readers") or {}).items())
        if self.results.get("pooled"):
            rows.append(("pooled", self.results["pooled"]))
        table = self.reader_table
        table.setRowCount(len(rows))
        for r, (name, s) in enumerate(rows):
            auc = s.get("auc")
            seconds = s.get("mean_seconds")
            p = s.get("p_binomial")
            label = name + (" (machine)" if s.get("kind") == "machine" else "")
            answered = f"{s.get('n_answered', s.get('n', 0))}" + ("" if s.get("finished", True) else " (reading)")
            cells = [label, answered, f"{pct(s.get('accuracy'))} {ci_text(s.get('accuracy_ci'))}",
                     f"{pct(s.get('sensitivity'))} / {pct(s.get('specificity'))}",
                     "–" if auc is None else f"{auc:.2f} {ci_text(s.get('auc_ci'), percent=False)}",
                     "–" if p is None else f"{p:.2g}",
                     "–" if seconds is None else f"{seconds:.1f}", str(s.get("verdict", ""))]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if name == "pooled":
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if c == len(cells) - 1:
                    item.setForeground(QColor(VERDICT_COLORS.get(text.split(" (")[0], TEXT_COLOR)))
                table.setItem(r, c, item)

    def _fill_confusion(self, stats: dict[str, Any]) -> None:
        confusion = stats.get("confusion") or {}
        table = self.confusion
        table.setRowCount(3)
        totals = [0, 0]
        for r, truth in enumerate(CALLS):
            row = confusion.get(truth, {})
            counts = [int(row.get(call, 0)) for call in CALLS]
            totals = [a + b for a, b in zip(totals, counts)]
            for c, text in enumerate([f"truly {truth}", *map(str, counts), str(sum(counts))]):
                item = QTableWidgetItem(text)
                if 1 <= c <= 2 and CALLS[c - 1] == truth:
                    item.setForeground(QColor("#8bd17c"))  # correct calls on the diagonal
                table.setItem(r, c, item)
        for c, text in enumerate(["total", *map(str, totals), str(sum(totals))]):
            table.setItem(2, c, QTableWidgetItem(text))

    def _fill_kappa(self) -> None:
        assert self.results is not None
        kappa = self.results.get("kappa") or {}
        rows = [(" – ".join(k["readers"]), k.get("n", 0), k.get("kappa")) for k in kappa.get("cohen") or []]
        fleiss = kappa.get("fleiss")
        if fleiss:
            rows.append((f"Fleiss: {', '.join(fleiss['readers'])}", fleiss.get("n", 0), fleiss.get("kappa")))
        table = self.kappa_table
        if not rows:
            rows = [("one reader: no agreement to measure", "", None)]
        table.setRowCount(len(rows))
        for r, (names, n, k) in enumerate(rows):
            for c, text in enumerate([names, str(n), "–" if k is None else f"{k:.2f}"]):
                table.setItem(r, c, QTableWidgetItem(text))

    # -- export -------------------------------------------------------------------------------
    def export_png(self, path: str | Path) -> Path:
        """The whole dashboard as a PNG screenshot."""
        return widget_png(self, path)

    def export_svg(self, path: str | Path) -> Path:
        """The whole dashboard as SVG (vector plots and text)."""
        return widget_svg(self, path)

    def export_csv(self, path: str | Path) -> Path:
        """The analysis' table: one row per reader (and pooled) × all / each model / each size bin."""
        from lesion_studio.core.export.atomic import write_bytes
        from lesion_studio.core.reader_study.analysis import results_csv

        assert self.results is not None
        return write_bytes(path, results_csv(self.results).encode("utf-8"))

    def _export_dialog(self, kind: str) -> None:
        if self.results is None:
            return
        path = ask_export_path(self, kind, "reader_study")
        if not path:
            return
        try:
            {"png": self.export_png, "svg": self.export_svg, "csv": self.export_csv}[kind](path)
        except (ConfigError, OSError) as exc:
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.warning(self, "Export failed", f"{path}: {exc}")
