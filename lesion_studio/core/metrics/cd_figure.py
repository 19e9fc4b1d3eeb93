"""Critical-difference diagrams (Demšar 2006, Fig. 1) for the headless path.

Conditions sit at their average rank over the blocks (folds) on a rank axis, 1 = best on the
left, the better half labelled on the left and the worse half on the right; a bar of length
CD shows the critical difference, and thick lines join the conditions whose average ranks
differ by at most CD (the Nemenyi test finds no difference inside such a group). The numbers
come from `statistics.friedman_nemenyi`; this module only draws them.

Drawn with matplotlib's object API (Figure + Agg canvas: no pyplot, no GUI backend, safe off
the main thread), written as PNG and SVG atomically, as `core/reader_study/figures.py` does.
Without matplotlib `write_cd_figure` writes nothing and returns [] (results.json holds every
number). The GUI dashboard draws its own view of the same results (`widgets/experiment_plots`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path

FIGURE_DPI = 110
_ROW = 0.22  # vertical distance between two label rows (axis units)


def cd_groups(ranks: Mapping[str, float], cd: float) -> list[tuple[str, ...]]:
    """Maximal runs of conditions (sorted by rank) whose average ranks differ by at most `cd`:
    the groups a CD diagram joins with a line (conditions not significantly different)."""
    names = sorted(ranks, key=lambda n: (ranks[n], n))
    groups, reach = [], -1
    for a in range(len(names)):
        b = max(j for j in range(a, len(names)) if ranks[names[j]] - ranks[names[a]] <= cd)
        if b > a and b > reach:
            groups.append(tuple(names[a:b + 1]))
        reach = max(reach, b)
    return groups


def cd_figure(ranks: Mapping[str, float], cd: float | None, title: str = ""):
    """A Demšar CD diagram of `ranks` (condition -> average rank, 1 = best); no CD bar or
    groups when `cd` is None."""
    from matplotlib.figure import Figure

    names = sorted(ranks, key=lambda n: (ranks[n], n))
    k = max(len(names), 2)
    groups = cd_groups(ranks, cd) if cd is not None else []
    left = names[:math.ceil(len(names) / 2)]
    right = names[len(left):]
    first_row = 0.35 + 0.1 * len(groups)
    rows = max(len(left), len(right))
    depth = first_row + _ROW * rows
    label_in = 0.068 * (max((len(n) for n in names), default=8) + 7) + 0.25  # 8 pt text plus "(r.rr)"
    axis_in = max(7.5 - 2 * label_in, 0.22 * (k - 1))  # at least 0.22 in between two ranks
    margin = label_in * (k - 1) / axis_in  # the label room on each side, in rank units
    title_in = 0.3 if title else 0.0
    height_in = 0.9 * (depth + 0.85) + title_in
    fig = Figure(figsize=(axis_in + 2 * label_in, height_in))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - title_in / height_in))
    ax.set_xlim(1 - margin, k + margin)
    ax.set_ylim(depth + 0.1, -0.75 if cd is not None else -0.35)
    ax.axis("off")
    ax.plot([1, k], [0, 0], color="black", lw=1.2)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, -0.06], color="black", lw=1)
        ax.text(r, -0.1, str(r), ha="center", va="bottom", fontsize=8)
    for r in range(1, k):
        ax.plot([r + 0.5, r + 0.5], [0, -0.03], color="black", lw=0.6)
    if cd is not None:
        ax.plot([1, 1 + cd], [-0.5, -0.5], color="#c0392b", lw=2)
        for x in (1, 1 + cd):
            ax.plot([x, x], [-0.46, -0.54], color="#c0392b", lw=1.2)
        ax.text(1 + cd / 2, -0.56, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8, color="#c0392b")
    for i, name in enumerate(left):
        y = first_row + _ROW * i
        ax.plot([ranks[name], ranks[name], 1 - 0.1], [0, y, y], color="0.25", lw=0.8)
        ax.text(1 - 0.15, y, f"{name} ({ranks[name]:.2f})", ha="right", va="center", fontsize=8)
    for i, name in enumerate(right):
        y = first_row + _ROW * (len(right) - 1 - i)
        ax.plot([ranks[name], ranks[name], k + 0.1], [0, y, y], color="0.25", lw=0.8)
        ax.text(k + 0.15, y, f"({ranks[name]:.2f}) {name}", ha="left", va="center", fontsize=8)
    for j, group in enumerate(groups):
        y = 0.2 + 0.1 * j
        ax.plot([ranks[group[0]] - 0.05, ranks[group[-1]] + 0.05], [y, y], color="black", lw=3.0,
                solid_capstyle="round")
    if title:
        fig.suptitle(title, fontsize=9, y=0.995, va="top")
    return fig


def write_cd_figure(ranks: Mapping[str, float], cd: float | None, stem: Path, title: str = "") -> list[Path]:
    """`stem`.png and `stem`.svg of `cd_figure`; [] without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lesion_studio.core.export.atomic import atomic_file

    fig = cd_figure(ranks, cd, title)
    FigureCanvasAgg(fig)
    paths = []
    for suffix in (".png", ".svg"):
        path = Path(stem).with_suffix(suffix)
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=FIGURE_DPI, format=suffix.lstrip("."))
        paths.append(path)
    return paths
