"""Plot helpers of the experiment dashboard: FROC bands, size-group bars, a critical-difference
summary. Each takes the loaded results dict (`models.experiments` format) and draws into a
pyqtgraph PlotWidget; the numbers come from the results file, nothing is recomputed but
curve resampling and fold averaging."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

#: Distinguishable colours for conditions (Okabe–Ito, colour-blind safe).
PALETTE = ("#56B4E9", "#E69F00", "#009E73", "#F0E442", "#CC79A7", "#D55E00", "#0072B2", "#999999")
FROC_GRID = np.exp2(np.linspace(np.log2(0.125), np.log2(8.0), 97))
SIZE_GROUPS = ("small", "medium", "large")
FROC_TICKS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def resample_froc(curve: dict, rates: np.ndarray = FROC_GRID) -> np.ndarray:
    """Sensitivity at each FP/image rate: best point with mean FP ≤ rate (as `froc_sensitivities`)."""
    fp = np.asarray(curve["fp_per_image"], float)
    sens = np.asarray(curve["sensitivity"], float)
    out = np.zeros(len(rates))
    for k, r in enumerate(rates):
        ok = fp <= r + 1e-12
        out[k] = sens[ok].max() if ok.any() else 0.0
    return out


def folds_of(doc: dict, condition: str) -> list[dict]:
    return sorted((f for f in doc["folds"] if f["condition"] == condition), key=lambda f: f["fold"])


def legend_columns(n_conditions: int) -> int:
    """Legend columns below a plot: up to four conditions side by side."""
    return max(1, min(n_conditions, 4))


def legend_below(plot: pg.PlotWidget, n_conditions: int) -> pg.LegendItem:
    """An empty legend under the plot's x axis (inside the plot, eight conditions covered the
    curves and bars), reused across redraws."""
    legend = getattr(plot, "_legend_below", None)
    if legend is None:
        legend = pg.LegendItem(labelTextSize="8pt")
        plot.plotItem.layout.addItem(legend, 5, 1)
        plot._legend_below = legend
    legend.clear()
    legend.setColumnCount(legend_columns(n_conditions))
    return legend


def draw_froc(plot: pg.PlotWidget, doc: dict) -> dict[str, np.ndarray]:
    """Mean FROC per condition on a log2 FP axis with a min–max band over folds; returns the means."""
    plot.clear()
    plot.setLogMode(x=True, y=False)
    plot.setLabel("bottom", "mean false positives per image")
    plot.setLabel("left", "lesion sensitivity")
    plot.setYRange(0, 1.02)
    plot.getAxis("bottom").setTicks([[(float(np.log10(r)), f"{r:g}") for r in FROC_TICKS]])
    plot.showGrid(x=True, y=True, alpha=0.25)
    legend = legend_below(plot, len(doc["conditions"]))
    n_folds = len({f["fold"] for f in doc["folds"]})  # the title says how many; a short label only says fewer
    means = {}
    for i, name in enumerate(doc["conditions"]):
        curves = np.array([resample_froc(f["froc"]) for f in folds_of(doc, name) if "froc" in f])
        if curves.size == 0:
            continue
        mean = curves.mean(axis=0)
        means[name] = mean
        c = pg.mkColor(color(i))
        lo = pg.PlotDataItem(FROC_GRID, curves.min(axis=0), pen=pg.mkPen(None))
        hi = pg.PlotDataItem(FROC_GRID, curves.max(axis=0), pen=pg.mkPen(None))
        band = c.lighter(100)
        band.setAlpha(60)
        plot.addItem(lo)
        plot.addItem(hi)
        plot.addItem(pg.FillBetweenItem(lo, hi, brush=pg.mkBrush(band)))
        label = name if len(curves) == n_folds else f"{name} ({len(curves)} of {n_folds} folds)"
        legend.addItem(plot.plot(FROC_GRID, mean, pen=pg.mkPen(c, width=2)), label)
    return means


def size_group_table(doc: dict) -> dict[str, dict[str, tuple[float, float, int]]]:
    """`{condition: {group: (mean recall over folds, SD, lesions)}}` (NaN folds skipped)."""
    out = {}
    for name in doc["conditions"]:
        out[name] = {}
        for g in SIZE_GROUPS:
            vals = np.array([f["size_groups"][g]["recall"] for f in folds_of(doc, name) if "size_groups" in f], float)
            n = int(sum(f["size_groups"][g]["n"] for f in folds_of(doc, name) if "size_groups" in f))
            vals = vals[~np.isnan(vals)]
            out[name][g] = (float(vals.mean()) if vals.size else float("nan"),
                            float(vals.std(ddof=1)) if vals.size > 1 else 0.0, n)
    return out


def draw_size_groups(plot: pg.PlotWidget, doc: dict) -> None:
    """Grouped bars: region-wise recall per P0 size group and condition, SD error bars."""
    plot.clear()
    table = size_group_table(doc)
    k = max(len(doc["conditions"]), 1)
    width = 0.8 / k
    legend = legend_below(plot, k)
    for i, name in enumerate(doc["conditions"]):
        xs = np.arange(len(SIZE_GROUPS)) - 0.4 + width * (i + 0.5)
        means = np.array([table[name][g][0] for g in SIZE_GROUPS])
        sds = np.array([table[name][g][1] for g in SIZE_GROUPS])
        shown = np.nan_to_num(means)
        bars = pg.BarGraphItem(x=xs, height=shown, width=width * 0.9, brush=color(i))
        plot.addItem(bars)
        legend.addItem(bars, name)
        plot.addItem(pg.ErrorBarItem(x=xs, y=shown, height=2 * np.nan_to_num(sds), beam=width * 0.3,
                                     pen=pg.mkPen("#d7dde5")))
    counts = [sum(table[n][g][2] for n in doc["conditions"][:1]) for g in SIZE_GROUPS]
    axis = plot.getAxis("bottom")
    axis.setTicks([[(j, f"{g} (n={c})") for j, (g, c) in enumerate(zip(SIZE_GROUPS, counts))]])
    plot.setLabel("left", "region-wise recall")
    plot.setYRange(0, 1.1)
    plot.setXRange(-0.6, len(SIZE_GROUPS) - 0.4)


def average_ranks(doc: dict, metric: str) -> dict[str, float]:
    """Average rank per condition over folds (1 = best, higher metric better)."""
    from scipy.stats import rankdata

    names = doc["conditions"]
    per = [[f["metrics"].get(metric, np.nan) for f in folds_of(doc, n)] for n in names]
    n_folds = min(len(p) for p in per) if per else 0
    if n_folds == 0:
        return {}
    data = np.array([p[:n_folds] for p in per], float).T
    data = np.nan_to_num(data, nan=-np.inf)
    ranks = rankdata(-data, axis=1).mean(axis=0)
    return {n: float(r) for n, r in zip(names, ranks)}


def draw_critical_difference(plot: pg.PlotWidget, doc: dict, metric: str) -> str:
    """Demšar-style CD summary: conditions at their average rank, the CD interval, and bars
    joining conditions whose ranks differ by less than CD (not significantly different by
    Nemenyi). Returns the caption (Friedman p or why it was skipped)."""
    plot.clear()
    plot.hideAxis("left")
    fr = doc.get("friedman", {}).get(metric, {})
    if "average_ranks" in fr:
        ranks = fr["average_ranks"]
        cd = fr["critical_difference"]
        caption = f"{metric}: Friedman χ²={fr['friedman_chi2']:.2f}, p={fr['friedman_p']:.3g}; CD={cd:.2f} (α={fr['alpha']})"
    else:
        ranks = average_ranks(doc, metric)
        cd = None
        caption = f"{metric}: average ranks over folds; Friedman/Nemenyi skipped ({fr.get('skipped', 'not computed')})"
    names = sorted(ranks, key=ranks.get)
    k = len(doc["conditions"])
    plot.setXRange(0.5, k + 0.5)
    plot.setLabel("bottom", "average rank (1 = best)")
    plot.getAxis("bottom").setTicks([[(r, str(r)) for r in range(1, k + 1)]])
    plot.plot([1, k], [0, 0], pen=pg.mkPen("#d7dde5", width=2))
    for j, name in enumerate(names):
        i = doc["conditions"].index(name)
        y = 1.0 + 0.6 * j
        plot.plot([ranks[name], ranks[name]], [0, y], pen=pg.mkPen(color(i), width=2))
        plot.plot([ranks[name]], [0], pen=None, symbol="o", symbolBrush=color(i), symbolSize=9)
        label = pg.TextItem(f"{name}  {ranks[name]:.2f}", color=color(i), anchor=(0, 0.5))
        label.setPos(ranks[name] + 0.05, y)
        plot.addItem(label)
    top = 1.0 + 0.6 * len(names)
    if cd is not None:
        plot.plot([1, 1 + cd], [top, top], pen=pg.mkPen("#ff6b6b", width=3))
        t = pg.TextItem(f"CD = {cd:.2f}", color="#ff6b6b", anchor=(0, 1))
        t.setPos(1, top + 0.5)
        plot.addItem(t)
        level, reach = -0.4, -1
        for a in range(len(names)):
            b = max(j for j in range(a, len(names)) if ranks[names[j]] - ranks[names[a]] < cd)
            if b > a and b > reach:  # a maximal group of conditions not significantly different
                plot.plot([ranks[names[a]] - 0.03, ranks[names[b]] + 0.03], [level, level],
                          pen=pg.mkPen("#d7dde5", width=4))
                level -= 0.35
            reach = max(reach, b)
    plot.setYRange(-1.5, top + 0.8)
    return caption
