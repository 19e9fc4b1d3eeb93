"""Live training dashboard: loss curves per term, learning rate, it/s, validation metrics,
a sample grid, other runs overlaid for comparison, and PNG/SVG/CSV export.

The dashboard renders `MetricHistory` objects (Qt-free, `core.jobs`); it never trains.
Redraws are coalesced and staggered: a history change only marks the plots stale and arms a
timer; each tick redraws one stale plot, so a fast training stream costs one small redraw per
`refresh_interval_ms` however many points arrive, and no single paint redraws all four plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401 - registers ImageExporter / SVGExporter
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lesion_studio.core.jobs import MetricHistory, format_duration
from lesion_studio.models.progress import format_rate
from lesion_studio.widgets.dashboard_export import ask_export_path

#: Distinct colours on the dark background (one per loss term / run).
PALETTE = ("#4cc9f0", "#f72585", "#ffd166", "#06d6a0", "#b388ff", "#ff9f1c", "#90be6d", "#ef476f")
COMPARE_LOSS_PREFERENCE = ("g_total", "l1", "l1_coarse", "g_adv")
SELECTION_TIP = "Checkpoint selection: the criterion (model.best_metric) and the step whose weights are 'best'"


def _pen(i: int, dashed: bool = False) -> pg.mkPen:
    style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
    return pg.mkPen(PALETTE[i % len(PALETTE)], width=1.6, style=style)


def sample_mosaic(images: np.ndarray, columns: int = 3, gap_px: int = 2) -> np.ndarray:
    """Tile `(N, H, W)` images into rows of `columns` (input, generated, target), NaN gaps."""
    n, h, w = images.shape
    rows = int(np.ceil(n / columns))
    out = np.full((rows * (h + gap_px) - gap_px, columns * (w + gap_px) - gap_px), np.nan, np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        out[r * (h + gap_px) : r * (h + gap_px) + h, c * (w + gap_px) : c * (w + gap_px) + w] = images[i]
    return out


class TrainingDashboard(QWidget):
    """Plots of one run (the "primary") plus dashed curves of the runs it is compared with."""

    refreshed = Signal()  # after a full redraw, or when the last stale plot was redrawn

    def __init__(self, parent: QWidget | None = None, refresh_interval_ms: int = 120) -> None:
        super().__init__(parent)
        self._history: MetricHistory | None = None
        self._title = ""
        self._overlays: list[tuple[str, MetricHistory]] = []
        self._status = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(refresh_interval_ms)
        self._timer.timeout.connect(self._redraw_next)
        self._dirty_plots: set[str] = set()
        self.redraw_count = 0
        self._x_max = 0

        self.title_label = QLabel("No run selected")
        self.title_label.setStyleSheet("font-weight: 600;")
        self.status_label = QLabel("")
        self.selection_label = QLabel("")  # which criterion picks the best checkpoint, and its step
        self.selection_label.setToolTip(SELECTION_TIP)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumHeight(14)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setVisible(False)
        self.metric_combo = QComboBox()
        self.metric_combo.setToolTip("Validation metric plotted (and compared across runs)")
        self.metric_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.metric_combo.setMinimumContentsLength(12)
        self.metric_combo.currentTextChanged.connect(lambda _text: self.schedule_refresh())
        self.png_button = QPushButton("PNG…")
        self.svg_button = QPushButton("SVG…")
        self.csv_button = QPushButton("CSV…")
        self.png_button.setToolTip("Export the plots as a PNG image")
        self.svg_button.setToolTip("Export the plots as an SVG drawing")
        self.csv_button.setToolTip("Export the metric history of this run as CSV")
        self.png_button.clicked.connect(lambda: self._export_clicked("png"))
        self.svg_button.clicked.connect(lambda: self._export_clicked("svg"))
        self.csv_button.clicked.connect(lambda: self._export_clicked("csv"))

        header = QHBoxLayout()
        header.addWidget(self.title_label)
        header.addStretch(1)
        header.addWidget(QLabel("Validation:"))
        header.addWidget(self.metric_combo)
        for button in (self.png_button, self.svg_button, self.csv_button):
            header.addWidget(button)

        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("#14161a")
        self.loss_plot = self._new_plot("Losses", "loss", row=0, col=0)
        self.val_plot = self._new_plot("Validation", "", row=0, col=1)
        self.lr_plot = self._new_plot("Learning rate", "lr", row=1, col=0)
        self.speed_plot = self._new_plot("Speed", "it/s", row=1, col=1)
        self._curves: dict[tuple[str, str], pg.PlotDataItem] = {}

        self.samples = pg.GraphicsLayoutWidget()
        self.samples.setBackground("#14161a")
        self.sample_titles = self.samples.addLabel("Samples", row=0, col=0, color="#c8d0da")
        self.sample_view = self.samples.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
        self.sample_view.enableAutoRange()  # keep the whole grid in view when the dock is resized
        self.sample_item = pg.ImageItem(axisOrder="row-major")
        self.sample_item.setLevels((-1.0, 1.0))
        self.sample_view.addItem(self.sample_item)
        self.samples.setMinimumWidth(180)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.plots)
        splitter.addWidget(self.samples)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(header)
        status = QHBoxLayout()
        status.addWidget(self.status_label)
        status.addWidget(self.progress_bar, 1)
        status.addWidget(self.selection_label)
        layout.addLayout(status)
        layout.addWidget(splitter, 1)

    def _new_plot(self, title: str, ylabel: str, row: int, col: int) -> pg.PlotItem:
        plot = self.plots.addPlot(row=row, col=col, title=title)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        if ylabel:
            plot.setLabel("left", ylabel)
        plot.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=pg.mkBrush(20, 22, 26, 200))
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        return plot

    # ------------------------------------------------------------------ data
    @property
    def history(self) -> MetricHistory | None:
        return self._history

    def set_run(self, title: str, history: MetricHistory | None) -> None:
        """Show `history` (None: clear). Later additions to it redraw on their own."""
        if self._history is not None:
            self._history.changed.disconnect(self.schedule_refresh)
        self._history = history
        self._title = title
        self._x_max = 0
        for plot in (self.loss_plot, self.val_plot, self.lr_plot, self.speed_plot):
            plot.enableAutoRange(x=True, y=True)
        self.title_label.setText(title or "No run selected")
        self.status_label.clear()
        self.selection_label.clear()
        self.progress_bar.setVisible(False)
        if history is not None:
            history.changed.connect(self.schedule_refresh)
        self._clear_curves()
        self.sample_item.clear()
        self.sample_titles.setText("Samples")
        self.refresh()

    def set_overlays(self, runs: list[tuple[str, MetricHistory]]) -> None:
        """Other runs drawn dashed: their main loss term and the chosen validation metric."""
        for _, history in self._overlays:
            history.changed.disconnect(self.schedule_refresh)
        self._overlays = list(runs)
        for _, history in self._overlays:
            history.changed.connect(self.schedule_refresh)
        self._clear_curves()
        self.refresh()

    @property
    def overlays(self) -> list[str]:
        return [label for label, _ in self._overlays]

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def set_selection(self, selection: dict) -> None:
        """Show the selection criterion and the chosen step (`JobRecord.selection`); the
        criterion is one of the validation metrics the plot offers."""
        criterion = selection.get("criterion") if selection else None
        if not criterion:
            self.selection_label.clear()
            return
        step, value = selection.get("best_step"), selection.get("best_value")
        text = f"best by {criterion}"
        if step is not None:
            text += f": step {step}" + (f" ({value:.4g})" if isinstance(value, (int, float)) else "")
        self.selection_label.setText(text)
        self.selection_label.setToolTip(selection.get("note") or SELECTION_TIP)

    def set_step_range(self, total_steps: int) -> None:
        """Fix the step axis to `[0, total_steps]`: growing curves then leave the x axes (and
        their cached tick pictures) alone, which keeps each redraw cheap."""
        if total_steps and total_steps != self._x_max:
            self._x_max = total_steps
            for plot in (self.loss_plot, self.val_plot, self.lr_plot, self.speed_plot):
                plot.setXRange(0, total_steps, padding=0.02)
                plot.enableAutoRange(x=False)

    def set_progress(self, step: int, total: int, it_per_s: float | None, eta_s: float | None,
                     elapsed_s: float | None, phase: str = "", running: bool = False) -> None:
        """The status line and bar: the phase ("preparing data…") until the first step
        reports, then step counter, speed (s/it when slow), elapsed time and ETA."""
        self.set_step_range(total)
        if phase:
            parts = [f"{phase}…", f"step {step}/{total}" if total else ""]
        else:
            parts = [f"step {step}/{total}" if total else f"step {step}"]
            if it_per_s:
                parts.append(format_rate(it_per_s))
        parts.append(f"elapsed {format_duration(elapsed_s)}")
        if not phase and (running or eta_s is not None):
            parts.append(f"ETA {format_duration(eta_s)}")
        self.set_status(" · ".join(p for p in parts if p))
        self.progress_bar.setVisible(running)
        if running and phase:
            self.progress_bar.setRange(0, 0)  # busy: nothing to count yet
        else:
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(min(step, max(total, 1)))

    def show_samples(self, step: int, images: np.ndarray, titles: tuple[str, ...] = ()) -> None:
        """`(N, H, W)` float32 in [-1, 1], row by row: input, generated, target."""
        columns = 3 if images.shape[0] % 3 == 0 else 1
        self.sample_item.setImage(sample_mosaic(images, columns), levels=(-1.0, 1.0), autoLevels=False)
        self.sample_view.enableAutoRange()
        names = " | ".join(titles[:columns]) if titles else ""
        self.sample_titles.setText(f"Samples at step {step}" + (f"<br>{names}" if names else ""))

    # ------------------------------------------------------------------ drawing
    def schedule_refresh(self) -> None:
        """Coalesce redraws: at most one per interval however many points arrive."""
        self._dirty_plots.update(self.PLOTS)
        if not self._timer.isActive():
            self._timer.start()

    def _clear_curves(self) -> None:
        for (plot_name, _), curve in self._curves.items():
            getattr(self, plot_name).removeItem(curve)
        self._curves.clear()
        for plot in (self.loss_plot, self.val_plot, self.lr_plot, self.speed_plot):
            if plot.legend is not None:
                plot.legend.clear()

    def _curve(self, plot_name: str, key: str, pen) -> pg.PlotDataItem:
        curve = self._curves.get((plot_name, key))
        if curve is None:
            curve = getattr(self, plot_name).plot([], [], pen=pen, name=key)
            self._curves[(plot_name, key)] = curve
        return curve

    def _set(self, plot_name: str, key: str, pen, series: tuple[list[int], list[float]]) -> None:
        """Draw one curve; a single point is drawn as a marker (a line needs two)."""
        steps, values = series
        curve = self._curve(plot_name, key, pen)
        if len(steps) == 1:
            curve.setData(np.asarray(steps, float), np.asarray(values, float), symbol="o", symbolSize=7,
                          symbolPen=pen, symbolBrush=pen.color())
        else:
            curve.setData(np.asarray(steps, float), np.asarray(values, float), symbol=None)

    def curve_lengths(self) -> dict[str, int]:
        """Points per curve, keyed `plot/name` (tests and diagnostics)."""
        return {f"{plot}/{key}": len(curve.xData if curve.xData is not None else [])
                for (plot, key), curve in self._curves.items()}

    def _update_metric_choices(self) -> None:
        names: dict[str, None] = {}
        for history in [self._history, *(h for _, h in self._overlays)]:
            if history is not None:
                names.update(dict.fromkeys(history.names("val")))
        current = [self.metric_combo.itemText(i) for i in range(self.metric_combo.count())]
        if list(names) != current:
            chosen = self.metric_combo.currentText()
            self.metric_combo.blockSignals(True)
            self.metric_combo.clear()
            self.metric_combo.addItems(list(names))
            preferred = chosen if chosen in names else ("masked_psnr" if "masked_psnr" in names else None)
            if preferred:
                self.metric_combo.setCurrentText(preferred)
            self.metric_combo.blockSignals(False)

    PLOTS = ("loss_plot", "speed_plot", "val_plot", "lr_plot")

    def refresh(self) -> None:
        """Redraw every curve from the histories now (exports, tests, run switches)."""
        self._timer.stop()
        self._dirty_plots.clear()
        self._update_metric_choices()
        for plot_name in self.PLOTS:
            self._draw(plot_name)
        self.redraw_count += 1
        self.refreshed.emit()

    def _redraw_next(self) -> None:
        """Timer tick: redraw ONE stale plot (round-robin), so one paint never repaints all
        four plots and their axes at once; re-arms while plots are stale."""
        self._update_metric_choices()
        for plot_name in self.PLOTS:
            if plot_name in self._dirty_plots:
                self._dirty_plots.discard(plot_name)
                self._draw(plot_name)
                break
        self.redraw_count += 1
        if self._dirty_plots:
            self._timer.start()
        else:
            self.refreshed.emit()

    def _draw(self, plot_name: str) -> None:
        metric = self.metric_combo.currentText()
        history = self._history
        if history is not None:
            step_names = history.names("step")
            if plot_name == "loss_plot":
                losses = [n for n in step_names if not n.startswith("lr_") and n != "it_per_s"]
                for i, name in enumerate(losses):
                    self._set("loss_plot", name, _pen(i), history.series("step", name))
            elif plot_name == "lr_plot":
                top = 0.0
                for i, name in enumerate(n for n in step_names if n.startswith("lr_")):
                    series = history.series("step", name)
                    self._set("lr_plot", name[3:], _pen(i), series)
                    top = max([top, *(v for v in series[1] if np.isfinite(v))])
                if top > 0:  # from zero: auto-range centres a constant rate in a ±0.5 band
                    self.lr_plot.setYRange(0.0, top * 1.15, padding=0)
            elif plot_name == "speed_plot" and "it_per_s" in step_names:
                self._set("speed_plot", "it/s", _pen(0), history.series("step", "it_per_s"))
            elif plot_name == "val_plot" and metric:
                self._set("val_plot", metric, _pen(0), history.series("val", metric))
        if plot_name not in ("loss_plot", "val_plot"):
            return
        for j, (label, other) in enumerate(self._overlays, start=1):
            if plot_name == "loss_plot":
                names = other.names("step")
                term = next((n for n in COMPARE_LOSS_PREFERENCE if n in names), names[0] if names else None)
                if term:
                    self._set("loss_plot", f"{label}: {term}", _pen(j + 3, dashed=True), other.series("step", term))
            elif metric:
                self._set("val_plot", f"{label}: {metric}", _pen(j, dashed=True), other.series("val", metric))

    # ------------------------------------------------------------------ export
    def export_png(self, path: str | Path, width_px: int = 1600) -> Path:
        """The four plots as one PNG (pyqtgraph ImageExporter)."""
        self.refresh()
        exporter = pg.exporters.ImageExporter(self.plots.ci)
        exporter.parameters()["width"] = int(width_px)
        exporter.export(str(path))
        return Path(path)

    def export_svg(self, path: str | Path) -> Path:
        """The four plots as one SVG drawing (vector curves and text).

        Rendered with Qt's QSvgGenerator: pyqtgraph 0.14's SVGExporter fails on the path data
        Qt 6.12 writes (`x,y = c.split(',')` in its clean-up pass)."""
        from PySide6.QtCore import QRectF, QSize
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        self.refresh()
        source = self.plots.ci.sceneBoundingRect()
        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setSize(QSize(int(source.width()), int(source.height())))
        generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
        generator.setTitle(self._title or "training")
        painter = QPainter(generator)
        try:
            self.plots.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
        finally:
            painter.end()
        return Path(path)

    def export_csv(self, path: str | Path) -> Path:
        """The metric history of the shown run as CSV (kind, step, one column per value)."""
        if self._history is None:
            raise ValueError("no run is shown")
        return self._history.to_csv(path)

    def ask_export_path(self, kind: str) -> str | None:
        """File dialog for an export (tests replace this)."""
        stem = (self._title or "training").replace(" ", "_").replace("/", "_")
        return ask_export_path(self, kind, stem)

    def _export_clicked(self, kind: str) -> None:
        path = self.ask_export_path(kind)
        if path:
            {"png": self.export_png, "svg": self.export_svg, "csv": self.export_csv}[kind](path)
            self.set_status(f"exported {path}")
