"""The `sweep` section of an experiment's results (issue 15, P4 §3.4): per metric, the Friedman
test over the sweep's conditions (blocks = folds), the Nemenyi post-hoc, the critical
difference, a CD diagram (PNG + SVG) and one plain-language line.

The statistics are the runner's own (`summarize` → `friedman_nemenyi`, computed once); this
module arranges them for the sweep: which pairs differ (only after the Friedman test rejects,
as Demšar 2006 prescribes), how each GAN condition fares against the baseline of its own
augmentation setting, and whether the folds could have shown a difference at all (CD larger
than the widest possible rank gap k − 1). A negative result is a result, and the line says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lesion_studio.core.metrics.cd_figure import write_cd_figure
from lesion_studio.models.sweep_config import BASELINE, SweepArm, SweepConfig

#: Where the CD diagrams go inside the experiment's results folder.
FIGURE_DIR = "sweep"


def _p(p: float) -> str:
    """A p-value as the summary writes it."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"


def significant_pairs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pair the Nemenyi test separates at `alpha`: `{"better", "worse", "p"}` (better =
    the lower average rank), from a `friedman_nemenyi` result."""
    names, ranks, alpha = result["methods"], result["average_ranks"], result["alpha"]
    out = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            p = result["nemenyi_p"][i][j]
            if p < alpha:
                a, b = sorted((names[i], names[j]), key=lambda n: ranks[n])
                out.append({"better": a, "worse": b, "p": float(p)})
    return sorted(out, key=lambda d: d["p"])


def own_baseline(arm: SweepArm) -> str:
    """The baseline a GAN condition is compared with: the one with the same augmentation."""
    return BASELINE + ("_aug" if arm.spatial_augmentation else "")


def summary_line(metric: str, result: dict[str, Any], arms: list[SweepArm]) -> str:
    """One plain-language sentence about `metric` (see the module docstring)."""
    if "skipped" in result:
        return f"{metric}: not tested ({result['skipped']})"
    p, k, n = result["friedman_p"], len(result["methods"]), result["n_blocks"]
    where = f"{k} conditions, {n} folds"
    if math.isnan(p):
        return f"{metric}: every condition ranked the same on every fold; nothing to test ({where})"
    blind = ""
    if result["critical_difference"] > k - 1:
        blind = (f"; with {n} folds no two of the {k} conditions can differ by Nemenyi "
                 f"(CD = {result['critical_difference']:.1f} > k − 1 = {k - 1})")
    if p >= result["alpha"]:
        baselines = "baseline" if sum(not a.generator for a in arms) == 1 else "baselines"
        return f"{metric}: no significant difference between the {baselines} and any GAN condition " \
               f"(Friedman p {_p(p)}; {where}){blind}"
    pairs = {(d["better"], d["worse"]) for d in significant_pairs(result)}
    better, worse, same = [], [], 0
    for arm in arms:
        if not arm.generator:
            continue
        base = own_baseline(arm)
        if (arm.name, base) in pairs:
            better.append(arm.name)
        elif (base, arm.name) in pairs:
            worse.append(arm.name)
        else:
            same += 1
    head = f"{metric}: the conditions differ (Friedman p {_p(p)}; {where})"
    if not better and not worse:
        return f"{head}, but no GAN condition differs significantly from its baseline (Nemenyi, " \
               f"α = {result['alpha']:g}; {len(pairs)} other pair(s) do){blind}"
    parts = ([f"better than its baseline: {', '.join(better)}"] if better else []) + \
            ([f"worse: {', '.join(worse)}"] if worse else [])
    rest = "every GAN condition differs from its baseline" if same == 0 else \
        "the other GAN condition does not differ from its baseline" if same == 1 else \
        f"the other {same} GAN conditions do not differ from their baseline"
    return f"{head}; Nemenyi (α = {result['alpha']:g}) " + "; ".join(parts) + f"; {rest}"


def sweep_report(sweep: SweepConfig, friedman: dict[str, dict], out_dir: Path) -> dict[str, Any]:
    """The results' `sweep` section from the runner's `friedman` (metric -> `friedman_nemenyi`
    result or `{"skipped": reason}`), writing a CD diagram per tested metric under
    `out_dir/sweep/` (paths in the section are relative to `out_dir`)."""
    arms = sweep.arms()
    metrics: dict[str, dict[str, Any]] = {}
    for metric, result in friedman.items():
        line = summary_line(metric, result, arms)
        if "skipped" in result:
            metrics[metric] = {"skipped": result["skipped"], "summary": line}
            continue
        tested = not math.isnan(result["friedman_p"]) and result["friedman_p"] < result["alpha"]
        entry = {"friedman_p": result["friedman_p"], "friedman_chi2": result["friedman_chi2"],
                 "average_ranks": result["average_ranks"], "critical_difference": result["critical_difference"],
                 "alpha": result["alpha"], "n_folds": result["n_blocks"],
                 "significant_pairs": significant_pairs(result) if tested else [],
                 "posthoc": "Nemenyi" if tested else "not run: the Friedman test did not reject",
                 "nemenyi_direction_sum": result["direction_sum"], "summary": line}
        title = f"{metric}: Friedman p {_p(result['friedman_p'])}" if not math.isnan(result["friedman_p"]) else metric
        files = write_cd_figure(result["average_ranks"], result["critical_difference"],
                                out_dir / FIGURE_DIR / f"cd_{metric}", title=title)
        entry["figures"] = [f.relative_to(out_dir).as_posix() for f in files]
        if not files:
            entry["figures_note"] = "matplotlib is not installed: no CD diagram drawn (the numbers are all here)"
        metrics[metric] = entry
    return {"design": "P4 §4.2: baseline and every generator at every generated count, each without and with "
                      "spatial augmentation; Friedman over the conditions with the folds as blocks, Nemenyi "
                      "post-hoc (Demšar 2006)",
            "generators": [g.to_dict() for g in sweep.generators],
            "conditions": {a.name: {"generator": a.generator, "generated_count": a.generated_count,
                                    "spatial_augmentation": a.spatial_augmentation,
                                    "baseline": None if not a.generator else own_baseline(a)} for a in arms},
            "metrics": metrics, "summary": [m["summary"] for m in metrics.values()]}
