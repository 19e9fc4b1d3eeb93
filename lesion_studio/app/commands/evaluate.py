"""`lesion-studio evaluate CONFIG.toml`: run a downstream experiment headless (no Qt)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_studio.core.errors import LesionStudioError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesion-studio evaluate",
        description=(
            "Train and evaluate segmentation/detection models on real vs. real + synthetic data "
            "(k-fold, per-patient fractions, classic augmentation, hard-example mining) and write "
            "results.json, results.csv and summary.csv. Finished folds are resumed."
        ),
    )
    parser.add_argument("config", type=Path, metavar="CONFIG.toml", help="experiment configuration")
    parser.add_argument("--out", type=Path, help="results folder (overrides [experiment] out_dir)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides [training] device")
    parser.add_argument("--no-resume", action="store_true", help="recompute folds that are already on disk")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    parser.add_argument("--force", action="store_true",
                        help="use a non-empty results folder that lesion-studio did not make")
    return parser


def main(argv: list[str]) -> int:
    """Run the experiment; returns 0 ok, 1 failed, 2 usage, 130 cancelled (Ctrl+C)."""
    import dataclasses

    from lesion_studio.core.device import resolve_device
    from lesion_studio.models.experiments import KEY_METRICS, ExperimentProgress, load_experiment_config, run_experiment

    args = build_parser().parse_args(argv)
    try:
        config = load_experiment_config(args.config)
        changes = {}
        if args.out is not None:
            changes["out_dir"] = args.out.resolve()
        if args.device is not None:
            changes["device"] = resolve_device(args.device)
        config = dataclasses.replace(config, **changes) if changes else config

        def progress(event: ExperimentProgress) -> None:
            if not args.quiet and event.stage != "epoch":
                print(f"[{event.done_units}/{event.total_units}] {event.message}", flush=True)

        doc = run_experiment(config, progress=progress, resume=not args.no_resume, force=args.force)
    except KeyboardInterrupt:
        print("lesion-studio evaluate: cancelled; finished folds are kept and resume next time", file=sys.stderr)
        return 130
    except (LesionStudioError, OSError, ValueError) as exc:
        print(f"lesion-studio evaluate: {exc}", file=sys.stderr)
        return 1
    for condition in doc["conditions"]:
        parts = []
        for m in KEY_METRICS:
            s = doc["summary"][condition].get(m)
            if s is not None:
                mark = "*" if s["significant"] else ""
                parts.append(f"{m} {s['mean']:.3f}±{s['sd']:.3f}{mark}")
        print(f"{condition}: " + ", ".join(parts))
    print(f"detector: {doc['detector']['label']}")
    print(f"results: {config.out_dir / 'results.json'}")
    return 0
