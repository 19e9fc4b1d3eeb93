"""Issue 14's acceptance experiments on the bundled real data, headless, end to end.

1. Builds the datasets into `--work/data` (idempotent: reruns reuse them):
   `node21_ct_nodules` (segmentation; the library's held-out scans, centre slices),
   `node21_ct_nodules_real-nodule` (its synthetic pool, classical real-nodule replacement) and
   `kidney_stones_ct` (detection; stone masks thresholded in the boxes, session = patient).
2. Runs `benchmarks/experiments/node21_seg.toml` and `kidney_stones_det.toml` with the
   experiment runner (`models.experiments.run_experiment`; finished folds resume), their data
   and results folders pointed into `--work`.
3. Prints where each results.json is, checks it says `leakage: none`, and writes
   `--work/<experiment>.comparisons.json`: per data fraction, real + synthetic minus real only,
   paired by fold (mean, SD, t-based 95 % CI, paired t-test) for the key metrics.

`--time-one-fold [CONDITION]` trains one condition on fold 0 only and extrapolates the whole
experiment from its epoch times and every condition's image counts (the TOMLs' estimates).
`--smoke` runs the whole pipeline in minutes: 1 epoch, the 10 % conditions only, results in
`--work/smoke-<experiment>` (checks the wiring, not a result).

    python scripts/run_acceptance_experiments.py [--data ../shared/data] [--work runs/acceptance]
    python scripts/run_acceptance_experiments.py --only kidney_stones_det --time-one-fold real@1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPERIMENTS = {
    "node21_seg": ROOT / "benchmarks" / "experiments" / "node21_seg.toml",
    "kidney_stones_det": ROOT / "benchmarks" / "experiments" / "kidney_stones_det.toml",
}
#: The metrics compared per fraction (the segmenter's and the box detector's).
COMPARED = {"segmentation": ("dice", "pixel_f1", "region_f1", "froc_auc"),
            "detection": ("froc_auc", "luna_cpm", "map50", "sens@1fp")}


def build_datasets(data: Path, work: Path) -> dict[str, Path]:
    """The three dataset folders under `work/data`, built or reused."""
    from lesion_studio.core.public_datasets import build_kidney_stones_dataset, build_node21_dataset
    from lesion_studio.models.synthetic_dataset import write_synthetic_dataset

    out = {"node21": work / "data" / "node21_ct_nodules", "node21_syn": work / "data" / "node21_ct_nodules_real-nodule",
           "kidney": work / "data" / "kidney_stones_ct"}
    for key, summary in (("node21", lambda: build_node21_dataset(data / "node21_ct_nodules", out["node21"])),
                         ("node21_syn", lambda: write_synthetic_dataset(out["node21"], out["node21_syn"])),
                         ("kidney", lambda: build_kidney_stones_dataset(data / "kidney_stones_ct", out["kidney"]))):
        t0 = time.monotonic()
        s = summary()
        print(f"dataset {out[key]}: {s.get('cases')} cases, {s.get('patients', '-')} patients "
              f"({time.monotonic() - t0:.1f} s)", flush=True)
    return out


def experiment_config(name: str, paths: dict[str, Path], work: Path):
    """The TOML's config with its data and results folders in `work`."""
    from lesion_studio.models.experiments import load_experiment_config

    config = load_experiment_config(EXPERIMENTS[name])
    if name == "node21_seg":
        return dataclasses.replace(config, dataset=paths["node21"].resolve(),
                                   synthetic_dataset=paths["node21_syn"].resolve(), out_dir=(work / name).resolve())
    return dataclasses.replace(config, dataset=paths["kidney"].resolve(), out_dir=(work / name).resolve())


def smoke_config(config, out_dir: Path):
    """`config` cut to 1 epoch and its 10 % conditions, writing into `out_dir`."""
    conditions = tuple(c for c in config.conditions if c.data_fraction == 0.1)
    return dataclasses.replace(config, epochs=1, conditions=conditions, baseline=conditions[0].name,
                               out_dir=out_dir.resolve())


def fraction_comparisons(doc: dict) -> dict:
    """Per fraction and key metric: real + synthetic minus real only, paired by fold."""
    from scipy import stats

    out: dict = {}
    by = {(f["condition"], f["fold"]): f["metrics"] for f in doc["folds"]}
    folds = sorted({f["fold"] for f in doc["folds"]})
    for cond in doc["conditions"]:
        if not cond.startswith("real+syn@"):
            continue
        fraction = cond.split("@", 1)[1]
        base = f"real@{fraction}"
        out[fraction] = {}
        for metric in COMPARED.get(doc["task"], COMPARED["segmentation"]):
            pairs = [(by[(cond, k)].get(metric), by[(base, k)].get(metric)) for k in folds
                     if (cond, k) in by and (base, k) in by]
            pairs = [(a, b) for a, b in pairs
                     if a is not None and b is not None and not (math.isnan(a) or math.isnan(b))]
            diffs = [a - b for a, b in pairs]
            if len(diffs) < 2:
                out[fraction][metric] = {"n": len(diffs), "note": "fewer than two paired folds"}
                continue
            mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
            half = stats.t.ppf(0.975, len(diffs) - 1) * sd / math.sqrt(len(diffs))
            p = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue) if sd > 0 else None
            out[fraction][metric] = {"real": statistics.fmean(b for _, b in pairs),
                                     "real+syn": statistics.fmean(a for a, _ in pairs), "diff_mean": mean,
                                     "diff_sd": sd, "diff_ci95": [mean - half, mean + half],
                                     "p_paired_t": p,  # None: every fold gave the same difference
                                     "n_folds": len(diffs), "per_fold_diff": diffs}
    return out


def run(name: str, config, work: Path, force: bool) -> Path:
    """Run one experiment to the end; check its isolation; write and print the comparisons."""
    from lesion_studio.models.experiments import ExperimentProgress, run_experiment

    t0 = time.monotonic()

    def progress(event: ExperimentProgress) -> None:
        if event.stage != "epoch":
            print(f"[{name} {event.done_units}/{event.total_units} {time.monotonic() - t0:6.0f} s] {event.message}",
                  flush=True)

    doc = run_experiment(config, progress=progress, force=force)
    leakage = doc["patient_isolation"]["leakage"]
    if leakage != "none":
        raise SystemExit(f"{name}: patient_isolation.leakage is {leakage!r}, not 'none'")
    comparisons = fraction_comparisons(doc)
    path = work / f"{name}.comparisons.json"
    path.write_text(json.dumps(comparisons, indent=2) + "\n", encoding="utf-8")
    print(f"\n{name}: {doc['detector']['label']}; {time.monotonic() - t0:.0f} s")
    for fraction, metrics in comparisons.items():
        cells = [f"{m} {v['real']:.3f}->{v['real+syn']:.3f} (diff {v['diff_mean']:+.3f}, CI {v['diff_ci95'][0]:+.3f}.."
                 f"{v['diff_ci95'][1]:+.3f})" for m, v in metrics.items() if "diff_mean" in v]
        print(f"  fraction {fraction}: " + "; ".join(cells))
    results = config.out_dir / "results.json"
    print(f"  results: {results} (patient_isolation.leakage: {leakage}, {doc['patient_isolation']['checked']} folds "
          f"checked)\n  comparisons: {path}", flush=True)
    return results


def time_one_fold(name: str, config, condition_name: str) -> float:
    """Train `condition_name` on fold 0 only; print its time and the whole experiment's estimate
    (per condition x fold: the measured overhead + epochs x seconds per image x the images of
    an epoch, a validation image counted as a third of a training one). Returns the estimate."""
    from lesion_studio.core.dataset import load_dataset
    from lesion_studio.models.determinism import deterministic_torch
    from lesion_studio.models.experiments import patient_folds, run_fold, sample_by_patient

    dataset = load_dataset(config.dataset)
    folds = patient_folds(dataset.cases, config.folds, config.seed, config.val_fraction)
    condition = next((c for c in config.conditions if c.name == condition_name), None)
    if condition is None:
        raise SystemExit(f"{name}: no condition {condition_name!r} ({', '.join(c.name for c in config.conditions)})")
    syn_patients = None
    if config.synthetic_dataset is not None:
        syn_patients = [c.patient_id for c in load_dataset(config.synthetic_dataset).cases]

    def epoch_images(cond, fold) -> tuple[int, int]:
        seed = config.seed * 1000 + fold.index
        real = sample_by_patient(fold.train, cond.data_fraction, seed)
        if cond.synthetic_count == 0:
            n_syn = 0
        elif syn_patients is not None:
            allowed = {c.patient_id for c in real}
            n_syn = min(cond.synthetic_count, sum(p in allowed for p in syn_patients))
        else:
            n_syn = cond.synthetic_count
        per_epoch = n_syn if config.box_detector else (
            0 if n_syn == 0 else min(n_syn, max(1, math.ceil(config.synthetic_per_epoch * n_syn))))
        return len(real) + per_epoch, len(fold.val)

    stamps: list[float] = []
    t0 = time.monotonic()
    with deterministic_torch(config.device, config.num_threads):
        record = run_fold(config, dataset, folds[0], condition, unit=0, total=1, cancel=None,
                          progress=lambda e: stamps.append(time.monotonic()) if e.stage == "epoch" else None)
    total = time.monotonic() - t0
    epoch_s = statistics.median(b - a for a, b in zip(stamps, stamps[1:])) if len(stamps) > 1 else total
    overhead = max(total - config.epochs * epoch_s, 0.0)
    n_train, n_val = epoch_images(condition, folds[0])
    per_image = epoch_s / (n_train + n_val / 3.0)
    estimate = sum(overhead + config.epochs * per_image * (lambda t, v: t + v / 3.0)(*epoch_images(c, f))
                   for c in config.conditions for f in folds)
    headline = {k: round(v, 3) for k, v in record["metrics"].items()
                if k in ("dice", "region_f1", "froc_auc", "luna_cpm")}
    print(f"{name}: {condition_name} fold 0: {total:.0f} s ({config.epochs} epochs of {epoch_s:.1f} s, "
          f"{n_train} training + {n_val} validation images an epoch, {overhead:.0f} s load/test); {headline}")
    print(f"{name}: estimate for {len(config.conditions)} conditions x {len(folds)} folds: {estimate / 60:.1f} min "
          f"(threads: {config.num_threads or 'torch default'})", flush=True)
    return estimate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding node21_ct_nodules/ and kidney_stones_ct/")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "acceptance", help="datasets and results")
    parser.add_argument("--only", choices=tuple(EXPERIMENTS), action="append", help="run only this experiment")
    parser.add_argument("--time-one-fold", nargs="?", const="real+syn@1.0", metavar="CONDITION",
                        help="train one condition (default real+syn@1.0) on fold 0 and estimate the total")
    parser.add_argument("--smoke", action="store_true", help="1 epoch, the 10 %% conditions only (wiring check)")
    parser.add_argument("--force", action="store_true",
                        help="use a non-empty results folder lesion-studio did not make")
    args = parser.parse_args(argv)
    from lesion_studio.core.errors import LesionStudioError

    try:
        paths = build_datasets(args.data.resolve(), args.work)
        results = []
        for name in args.only or tuple(EXPERIMENTS):
            config = experiment_config(name, paths, args.work)
            if args.smoke:
                config = smoke_config(config, args.work / f"smoke-{name}")
            if args.time_one_fold:
                time_one_fold(name, config, args.time_one_fold)
            else:
                results.append(run(name, config, args.work, args.force))
    except LesionStudioError as exc:
        print(f"run_acceptance_experiments: {exc}", file=sys.stderr)
        return 1
    for path in results:
        print(f"results (leakage: none): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
