"""Reader-study figures for the headless path: ROC curves, confusion tables, per-model bars.

Drawn with matplotlib's object API (`matplotlib.figure.Figure` + the Agg canvas): no pyplot,
no GUI backend, safe off the main thread. Each figure is written as PNG and SVG, atomically.
When matplotlib is not installed `write_figures` writes nothing and returns [] (the JSON and
CSV results hold every number). The GUI dashboard draws its own views of the same results.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

FIGURE_DPI = 110


def _entries(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reader, then the pooled humans (when there are several readers)."""
    entries = list(results["readers"].values())
    if results.get("pooled") is not None and len(entries) > 1:
        entries.append(results["pooled"])
    return entries


def _label(stats: dict[str, Any]) -> str:
    return "pooled (humans)" if stats["kind"] == "pooled" else stats["reader"]


def roc_figure(results: dict[str, Any]):
    """ROC curve of every reader and the pooled humans, AUC (95 % CI) in the legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="chance")
    for stats in _entries(results):
        roc = stats["roc"]
        if not roc["fpr"]:
            continue
        auc, ci = stats["auc"], stats["auc_ci"]
        text = "n/a" if auc is None else f"{auc:.2f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")
        style = {"pooled": dict(lw=2.2, color="black"), "machine": dict(lw=1.2, ls="--")}.get(stats["kind"], dict(lw=1.2))
        ax.plot(roc["fpr"], roc["tpr"], drawstyle="default", marker=".", ms=3,
                label=f"{_label(stats)}: AUC {text}", **style)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("real cases called synthetic (1 − specificity)")
    ax.set_ylabel("synthetic cases spotted (sensitivity)")
    ax.set_title(f"{results.get('name', '')}: real vs synthetic", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(results: dict[str, Any]):
    """One 2×2 table (truth × call, counts and row shares) per reader and the pooled humans."""
    from matplotlib.figure import Figure

    entries = _entries(results) or []
    n = max(len(entries), 1)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows))
    for i, stats in enumerate(entries):
        ax = fig.add_subplot(rows, cols, i + 1)
        table = [[stats["confusion"][t][c] for c in ("real", "synthetic")] for t in ("real", "synthetic")]
        totals = [max(sum(r), 1) for r in table]
        shares = [[v / totals[k] for v in row] for k, row in enumerate(table)]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for r in range(2):
            for c in range(2):
                ax.text(c, r, f"{table[r][c]}\n{shares[r][c]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if shares[r][c] > 0.6 else "black")
        ax.set_xticks([0, 1], ["real", "synth."], fontsize=7)
        ax.set_yticks([0, 1], ["real", "synth."], fontsize=7)
        ax.set_xlabel("called", fontsize=7)
        ax.set_ylabel("truth", fontsize=7)
        acc = stats["accuracy"]
        ax.set_title(f"{_label(stats)}\naccuracy {'n/a' if acc is None else f'{acc:.0%}'}", fontsize=8)
    fig.tight_layout()
    return fig


def per_model_figure(results: dict[str, Any]):
    """Share of cases called synthetic: real cases (should be low) and each model's cases."""
    from matplotlib.figure import Figure

    entries = _entries(results)
    models = sorted({m for s in entries for m in s["by_model"]})
    groups = ["real", *models]
    fig = Figure(figsize=(max(4.0, 1.2 * len(groups) * max(len(entries), 1) ** 0.5 + 2), 3.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(entries), 1)
    for j, stats in enumerate(entries):
        values = [1.0 - (stats["specificity"] or 0.0) if stats["specificity"] is not None else 0.0]
        values += [(stats["by_model"].get(m) or {}).get("sensitivity") or 0.0 for m in models]
        xs = [i + (j - (len(entries) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, values, width=width * 0.95, label=_label(stats))
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("called synthetic")
    ax.set_title("how often each kind of case was called synthetic", fontsize=9)
    if entries:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> Path:
    """Write one figure atomically (format from the suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lesion_studio.core.export.atomic import atomic_file

    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=FIGURE_DPI, format=path.suffix.lstrip("."))
    return path


def write_figures(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """roc, confusion and per_model as PNG and SVG in `out_dir`; [] without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return []
    paths = []
    for name, make in (("roc", roc_figure), ("confusion", confusion_figure), ("per_model", per_model_figure)):
        fig = make(results)
        for suffix in (".png", ".svg"):
            paths.append(save_figure(fig, Path(out_dir) / f"{name}{suffix}"))
    return paths
