"""Issue 15's sweep on the bundled real CT nodules, headless: baseline vs B-SG vs MC-SG at four
generated counts, 3 folds by series UID, Friedman + Nemenyi and the CD diagram per metric.

1. Builds `--work/data/node21_ct_nodules_64` (idempotent): the centre slice of each nodule of
   the 167 series the generators never saw, padded from 50² to 64² with −1024 HU like the
   generators' training slices (`core.public_datasets.build_node21_dataset`).
2. Runs `benchmarks/experiments/node21_p4_sweep.toml` with its generator paths set to the
   checkpoints given (`--bsg`, `--msg`, `--csg`; default: the latest checkpoint of each
   `runs/default_models/ct-stylegan2-*/run`) and `--augmentation off|on` (P4's arms without /
   with spatial augmentation, one experiment each so that two processes share two cores).
3. Prints the sweep's one-line verdicts and where results.json and the CD diagrams are.

    python scripts/run_p4_sweep.py --augmentation off   # and, beside it, --augmentation on
    python scripts/run_p4_sweep.py --smoke              # 1 epoch, counts 20 and 50: the wiring only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

TOML = ROOT / "benchmarks" / "experiments" / "node21_p4_sweep.toml"
GENERATOR_RUNS = ROOT / "runs" / "default_models"


def latest(family: str) -> Path:
    """The most advanced checkpoint of `runs/default_models/ct-<family>/run`."""
    from train_default_models import latest_checkpoint

    run = GENERATOR_RUNS / f"ct-{family}" / "run"
    found = latest_checkpoint(run)
    if found is None:
        raise SystemExit(f"no checkpoint in {run}: train it first (scripts/train_default_models.py "
                         f"--task ct-stylegan2 --family {family}) or pass its path")
    return found.with_name(found.name.replace(".state.safetensors", ".safetensors"))


def sweep_config(data: Path, work: Path, augmentation: bool, checkpoints: dict[str, Path], smoke: bool,
                 control_epochs: int = 0):
    """The TOML's config with this run's dataset, output folder, arms and generator checkpoints."""
    from lesion_studio.core.public_datasets import build_node21_dataset
    from lesion_studio.models.experiments import experiment_config_from_dict
    from lesion_studio.models.sweep_config import SWEEP_DEFAULTS

    dataset = work / "data" / "node21_ct_nodules_64"
    summary = build_node21_dataset(data / "node21_ct_nodules", dataset, series="heldout", pad_to_px=64, pad_hu=-1024)
    print(f"dataset {dataset}: {summary['cases']} cases, {summary['patients']} patients", flush=True)
    doc = tomllib.loads(TOML.read_text(encoding="utf-8"))
    name = ("smoke-" if smoke else "") + ("aug" if augmentation else "plain")
    doc["experiment"] |= {"dataset": str(dataset.resolve()), "out_dir": str((work / name).resolve())}
    doc["sweep"]["spatial_augmentation"] = [augmentation]
    doc["sweep"]["generators"]["bsg"]["checkpoint"] = str(checkpoints["bsg"].resolve())
    doc["sweep"]["generators"]["mcsg"] |= {"mask": str(checkpoints["msg"].resolve()),
                                           "image": str(checkpoints["csg"].resolve())}
    if smoke:
        doc["training"]["epochs"] = 1
        doc["sweep"]["generated_counts"] = [20, 50]
    if control_epochs:
        # the baseline alone, trained for `control_epochs`: adding N cases to ~170 real ones also
        # adds optimizer steps per epoch, so a gain at 16 epochs may be a longer-training gain
        del doc["sweep"]
        doc["experiment"] |= {"out_dir": str((work / f"control-{name}-{control_epochs}ep").resolve()),
                              "baseline": "baseline"}
        doc["training"] |= {"epochs": control_epochs, **SWEEP_DEFAULTS}
        doc["conditions"] = [{"name": "baseline" + ("_aug" if augmentation else ""),
                              "classic_augmentation": augmentation}]
        doc["experiment"]["baseline"] = doc["conditions"][0]["name"]
    return experiment_config_from_dict(doc, TOML.parent, path=TOML)


#: The columns of the printed table: the segmenter's key metrics (SPEC §3).
TABLE_METRICS = ("dice", "pixel_f1", "region_f1", "froc_auc", "luna_cpm")


def markdown_table(doc: dict) -> str:
    """Per condition: mean ± SD over folds of `TABLE_METRICS` and the average Friedman rank by
    Dice (1 = best), baseline first."""
    ranks = doc["sweep"]["metrics"].get("dice", {}).get("average_ranks", {})
    lines = ["| condition | " + " | ".join(TABLE_METRICS) + " | mean rank (dice) |",
             "| --- |" + " --- |" * (len(TABLE_METRICS) + 1)]
    for condition in doc["conditions"]:
        cells = []
        for metric in TABLE_METRICS:
            entry = doc["summary"][condition].get(metric, {})
            cells.append(f"{entry['mean']:.3f} ± {entry['sd']:.3f}" if entry else "-")
        rank = ranks.get(condition)
        cells.append("-" if rank is None else f"{rank:.2f}")
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "p4_sweep")
    parser.add_argument("--augmentation", choices=("off", "on"), default="off")
    parser.add_argument("--bsg", type=Path, default=None, help="stylegan2-joint checkpoint")
    parser.add_argument("--msg", type=Path, default=None, help="stylegan2-mask checkpoint")
    parser.add_argument("--csg", type=Path, default=None, help="stylegan2-cond checkpoint")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--control-epochs", type=int, default=0,
                        help="run only the baseline, for this many epochs (the matched-steps control)")
    args = parser.parse_args(argv)
    from lesion_studio.models.experiments import ExperimentProgress, run_experiment

    checkpoints = {"bsg": args.bsg or latest("stylegan2-joint"), "msg": args.msg or latest("stylegan2-mask"),
                   "csg": args.csg or latest("stylegan2-cond")}
    print(json.dumps({k: str(v) for k, v in checkpoints.items()}), flush=True)
    config = sweep_config(args.data, args.work, args.augmentation == "on", checkpoints, args.smoke,
                          args.control_epochs)
    t0 = time.monotonic()

    def progress(event: ExperimentProgress) -> None:
        if event.stage != "epoch":
            print(f"[{event.done_units}/{event.total_units} {time.monotonic() - t0:6.0f} s] {event.message}", flush=True)

    doc = run_experiment(config, progress=progress)
    if doc["patient_isolation"]["leakage"] != "none":
        raise SystemExit(f"patient_isolation.leakage is {doc['patient_isolation']['leakage']!r}, not 'none'")
    print(f"\n{config.name} ({'with' if args.augmentation == 'on' else 'without'} spatial augmentation): "
          f"{time.monotonic() - t0:.0f} s; results {config.out_dir / 'results.json'}")
    if "sweep" not in doc:  # the control: no ranks, the per-fold means
        print(json.dumps({m: doc["summary"][config.baseline][m] for m in TABLE_METRICS}, indent=1))
        return 0
    for metric, entry in doc["sweep"]["metrics"].items():
        print(f"  {entry['summary']}  [{', '.join(entry.get('figures', []))}]")
    table = markdown_table(doc)
    (config.out_dir / "table.md").write_text(table, encoding="utf-8")
    print("\n" + table, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
