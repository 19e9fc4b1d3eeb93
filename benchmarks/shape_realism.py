"""Are generated lesion shapes like real ones? Shape statistics against held-out real masks.

Sources, each normalised the way the P3 shape generator's training masks are (SPEC §1.4:
moment diameter scaled to `d_init`, centred, resized to the generator's patch) and cleaned by
`clean_shape` (the step every shape goes through in the engine):

- `heldout-real`: LIDC-IDRI nodule masks of the realism benchmark's HELD-OUT series
  (`resources/nodules/split.json`), all five axial slices of node21_ct_axial.npz, components
  of at least 5 mm, smooth-upsampled like the training masks (`smooth_component`); the
  reference;
- `generator`: samples of a shape checkpoint (`--checkpoint`, repeatable as NAME=PATH),
  through `load_shape_sampler` (the engine's path);
- `bank`: the bundled real-nodule library's axial shapes (library series, never held out) —
  real shapes from other patients, the ceiling a generator can reach;
- `lobulated`: the built-in geometric blobs the shape picker falls back to without a model.

Statistics per shape: solidity, eccentricity, circularity (4πA/P²), extent (area / bbox
area); before cleaning also the component count and whether there are holes. Distances to
`heldout-real`: Wasserstein-1 per statistic in units of the real standard deviation, their
mean, and a two-sample test — a logistic regression on the four statistics, series-free
5-fold AUC (0.5 = the statistics cannot tell the source from real).

`--select-on val` compares each checkpoint of a run folder against the VALIDATION series of
the training script's split instead (never the held-out ones) and names the best: the
selection criterion of the shipped shape model.

    python benchmarks/shape_realism.py --checkpoint dcgan=runs/default_models/ct-shape/run/step_008000 \
        [--data ../shared/data] [--n 600] [--out shape_out] [--sheet docs/shape_realism.png]
    python benchmarks/shape_realism.py --select-on val --run runs/default_models/ct-shape/run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks._common import cpu_device, emit, git_commit  # noqa: E402

STATS = ("solidity", "eccentricity", "circularity", "extent")
MIN_COMPONENT_MM = 5.0  # as the training script's CT_SHAPE_MIN_COMPONENT_MM
CT_AXIAL = Path("node21_ct_nodules") / "node21_ct_axial.npz"


def normalized(component: np.ndarray, patch_px: int) -> np.ndarray:
    """One component as a training mask of a `patch_px` shape generator (P3 §IV-A, scaled)."""
    from lesion_studio.core.geometry.size_modulation import normalize_training_mask

    d_init = 100.0 * patch_px / 128.0
    return normalize_training_mask(component, d_init_px=d_init, patch_px=2 * patch_px, out_px=patch_px)


def real_masks(data: Path, series_filter, patch_px: int) -> tuple[list[np.ndarray], list[str]]:
    """Normalised real nodule masks (components ≥ 5 mm, all five slices) of the series that
    `series_filter(uid)` accepts, with their series UIDs."""
    from scipy import ndimage

    from lesion_studio.core.classical.nodule_library import smooth_component

    src = data / CT_AXIAL
    with open(src.parent / "nodules.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    with np.load(src) as npz:
        names, masks = [str(n) for n in npz["names"]], npz["masks"]
    out, series = [], []
    for i, name in enumerate(names):
        uid = rows[name]["seriesuid"]
        if int(rows[name]["padded"]) or not series_filter(uid):
            continue
        for s in range(masks.shape[1]):
            labels, n = ndimage.label(masks[i, s] > 0, structure=np.ones((3, 3)))
            for k in range(1, n + 1):
                comp = labels == k
                if 2.0 * np.sqrt(comp.sum() / np.pi) >= MIN_COMPONENT_MM:
                    out.append(normalized(smooth_component(comp)[0], patch_px))
                    series.append(uid)
    return out, series


def shape_stats(mask: np.ndarray) -> dict:
    """The four shape statistics of the largest component, plus raw topology counts."""
    from scipy import ndimage
    from skimage.measure import regionprops

    mask = np.asarray(mask, bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    holes = bool((ndimage.binary_fill_holes(mask) & ~mask).any())
    if n == 0:
        return {"components": 0, "holes": False} | {k: float("nan") for k in STATS}
    largest = labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:])))
    p = regionprops(largest.astype(np.uint8))[0]
    perimeter = max(float(p.perimeter), 1e-6)
    return {"components": int(n), "holes": holes, "solidity": float(p.solidity),
            "eccentricity": float(p.eccentricity), "circularity": float(4 * np.pi * p.area / perimeter ** 2),
            "extent": float(p.extent)}


def cleaned(masks) -> list[np.ndarray]:
    from lesion_studio.core.geometry.shape_cleanup import clean_shape

    return [clean_shape(m) for m in masks if np.asarray(m).any()]


def generator_masks(checkpoint: Path, n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """`(raw, cleaned, patch_px)` samples of a shape checkpoint (the engine's sampler cleans;
    the raw outputs are read from its generator for the topology counts)."""
    import torch

    from lesion_studio.models.inference import load_shape_sampler

    sampler = load_shape_sampler(checkpoint)
    with torch.no_grad():
        z = torch.randn(n, sampler.z_dim, generator=torch.Generator().manual_seed(seed))
        raw = list((sampler.generator(z)[:, 0] > 0).numpy())
    clean = [m for m in sampler.sample(n, seed) if m.any()]
    patch_px = int(raw[0].shape[0])
    family = json.loads(Path(str(checkpoint).removesuffix(".safetensors") + ".json").read_text())["family"]
    if family == "stylegan2-mask":
        # P4's M-SG draws masks at their true size (1 mm pixels on the CT slices), not P3's
        # normalised ones: they go through exactly what the real reference masks go through
        # (components of at least 5 mm, smooth upsampling, normalisation)
        from lesion_studio.core.classical.nodule_library import smooth_component

        clean = [normalized(smooth_component(m)[0], patch_px) for m in clean
                 if 2.0 * np.sqrt(m.sum() / np.pi) >= MIN_COMPONENT_MM]
    return raw, clean, patch_px


def bank_masks(patch_px: int) -> list[np.ndarray]:
    from lesion_studio.core.classical.nodule_library import bundled_library

    library = bundled_library()
    bank = library.shape_bank("axial")  # the smooth outlines the engine inserts
    return [normalized(bank.masks[i], patch_px) for i in range(len(bank))]


def lobulated_masks(n: int, seed: int, patch_px: int) -> list[np.ndarray]:
    from lesion_studio.core.builtin_shapes import lobulated_shape

    return [normalized(lobulated_shape(seed + k), patch_px) for k in range(n)]


def table(masks: list[np.ndarray]) -> np.ndarray:
    return np.array([[shape_stats(m)[k] for k in STATS] for m in masks], dtype=np.float64)


def two_sample_auc(real: np.ndarray, other: np.ndarray, seed: int) -> float:
    """5-fold CV AUC of a logistic regression telling `other` rows from `real` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.metrics import roc_auc_score

    x = np.vstack([real, other])
    y = np.r_[np.zeros(len(real)), np.ones(len(other))]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression()), x, y, cv=folds,
                          method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def compare(real: np.ndarray, other: np.ndarray, seed: int) -> dict:
    """W1 per statistic (in real-sd units), their mean, and the two-sample AUC."""
    from scipy.stats import wasserstein_distance

    w1 = {k: float(wasserstein_distance(real[:, j], other[:, j]) / (real[:, j].std() + 1e-9))
          for j, k in enumerate(STATS)}
    return {"w1_sd": {k: round(v, 4) for k, v in w1.items()}, "w1_sd_mean": round(float(np.mean(list(w1.values()))), 4),
            "auc": round(two_sample_auc(real, other, seed), 4),
            "mean": {k: round(float(other[:, j].mean()), 4) for j, k in enumerate(STATS)},
            "sd": {k: round(float(other[:, j].std()), 4) for j, k in enumerate(STATS)}, "n": int(len(other))}


def topology(raw: list[np.ndarray]) -> dict:
    st = [shape_stats(m) for m in raw]
    return {"empty": round(float(np.mean([s["components"] == 0 for s in st])), 4),
            "multi_component": round(float(np.mean([s["components"] > 1 for s in st])), 4),
            "holes": round(float(np.mean([s["holes"] for s in st])), 4)}


def contact_sheet(groups: dict[str, list[np.ndarray]], path: Path, per_row: int = 12) -> None:
    """One row block per source, `per_row` shapes each, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(groups), 1, figsize=(per_row * 0.9, 1.15 * len(groups)))
    for ax, (name, masks) in zip(np.atleast_1d(axes), groups.items()):
        strip = np.concatenate([np.pad(m.astype(float), 2, constant_values=0.35) for m in masks[:per_row]], axis=1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def validation_series(run: Path) -> set[str]:
    """The validation series of the training script's dataset (next to the run folder)."""
    doc = json.loads((run.parent / "dataset" / "dataset.json").read_text())
    return {c["patient_id"] for c in doc["cases"] if c.get("split") == "val"}


def select(args) -> int:
    """Score every periodic checkpoint of `--run` against the validation series; name the best."""
    val = validation_series(args.run)
    rows = []
    candidates = sorted(p.with_suffix("") for p in args.run.glob("step_*.json") if not p.name.endswith(".state.json"))
    candidates += [args.run / "final"] if (args.run / "final.json").is_file() else []
    if not candidates:
        raise SystemExit(f"{args.run}: no step_*.json checkpoints to select from")
    patch = generator_masks(candidates[0], 2, 0)[2]
    real = table(cleaned(real_masks(args.data, val.__contains__, patch)[0]))
    for ck in candidates:
        _, clean, _ = generator_masks(ck, args.n, args.seed)
        row = {"checkpoint": str(ck)} | compare(real, table(clean), args.seed)
        rows.append(row)
        emit({"benchmark": "shape_realism_select", "against": "validation series", "n_real": len(real),
              **{k: row[k] for k in ("checkpoint", "w1_sd_mean", "auc")}})
    best = min(rows, key=lambda r: (r["w1_sd_mean"], r["auc"]))
    emit({"benchmark": "shape_realism_select", "selected": best["checkpoint"], "criterion": "lowest mean W1 (sd units) "
          "of solidity/eccentricity/circularity/extent against the validation series' cleaned masks"})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection.json").write_text(json.dumps({"rows": rows, "selected": best["checkpoint"]}, indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH of a shape checkpoint (repeatable)")
    p.add_argument("--n", type=int, default=600, help="generated / lobulated shapes per source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("shape_out"))
    p.add_argument("--sheet", type=Path, default=None, help="also write the contact sheet here (e.g. docs/)")
    p.add_argument("--select-on", choices=("val",), default=None)
    p.add_argument("--run", type=Path, default=None, help="run folder for --select-on")
    args = p.parse_args()
    if not (args.data / CT_AXIAL).is_file():
        raise SystemExit(f"{args.data / CT_AXIAL}: not found (pass --data, the shared real-data folder)")
    if args.select_on:
        if args.run is None:
            p.error("--select-on needs --run")
        return select(args)
    from lesion_studio.core.classical.nodule_library import heldout_series_uids

    started = time.time()
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    gens = {name: generator_masks(Path(path), args.n, args.seed) for name, path in checkpoints.items()}
    patch = next(iter(gens.values()))[2] if gens else 64
    held = heldout_series_uids()
    real_raw, real_series = real_masks(args.data, held.__contains__, patch)
    real_clean = cleaned(real_raw)
    real = table(real_clean)
    sources = {"bank (real, library series)": cleaned(bank_masks(patch)),
               "lobulated (built-in)": cleaned(lobulated_masks(args.n, args.seed, patch))}
    for name, (_, clean, _) in gens.items():
        sources[f"generator {name}"] = clean
    results = {"heldout-real": {"n": len(real), "series": len(set(real_series)),
                                "mean": {k: round(float(real[:, j].mean()), 4) for j, k in enumerate(STATS)},
                                "sd": {k: round(float(real[:, j].std()), 4) for j, k in enumerate(STATS)},
                                "topology_before_cleaning": topology(real_raw)}}
    for name, masks in sources.items():
        results[name] = compare(real, table(masks), args.seed)
    for name, (raw, _, _) in gens.items():
        results[f"generator {name}"]["topology_before_cleaning"] = topology(raw)
        results[f"generator {name}"]["checkpoint"] = checkpoints[name]
    doc = {"benchmark": "shape_realism", "device": cpu_device(), "commit": git_commit(), "seed": args.seed,
           "patch_px": patch, "reference": "held-out series' real masks (cleaned)", "results": results,
           "wall_s": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shape_realism.json").write_text(json.dumps(doc, indent=1))
    rng = np.random.default_rng(args.seed)
    groups = {"real, held-out series": [real_clean[i] for i in rng.choice(len(real_clean), 12, replace=False)]}
    groups.update({name: masks for name, masks in sources.items()})
    contact_sheet(groups, args.out / "shape_realism.png")
    if args.sheet:
        contact_sheet(groups, args.sheet)
    for name, row in results.items():
        emit({"benchmark": "shape_realism", "source": name, **{k: row[k] for k in ("n", "w1_sd_mean", "auc") if k in row}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
