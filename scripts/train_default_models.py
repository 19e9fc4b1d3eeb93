"""Train lesion-studio's bundled models on real data (`--data`), and ship those that earn it.

Tasks (`--task`):

- `ct-removal` (real data): CT lung hole filling / lesion removal, the texture family with
  `objective = "remove"`, trained on the LIBRARY series of `node21_ct_nodules/node21_ct_axial.npz`
  (LIDC-IDRI via LUNA16 / NODE21, 1 mm, HU). Every series listed by `heldout_series_uids()`
  (the realism benchmark's held-out scans) is excluded, and the script asserts it. The five
  axial slices of each nodule become five dataset cases with the nodule mask as lesion mask,
  so the removal holes are drawn in lesion-free tissue away from the nodules; patient = series
  UID; 15 % of the library series form the validation split that picks the checkpoint
  (lowest validation masked L1). The benchmark's held-out series are never seen.
- `ct-inpaint` (real data): CT nodule inpainting (texture family, objective "inpaint"), the
  same slices and split; holes are the nodules themselves. `--ship --realism
  S0.json S1.json S2.json` (benchmarks/realism.py, one per seed) bundles it as
  `ct_nodule_inpaint` when its mean AUC is closer to real than the phantom demo model's it
  replaces; it does not beat `real-nodule` on the mean over seeds, so its card says
  "alternative" and `real-nodule` stays the default.
- `ct-outpaint` (real data): P1 outpainting (outpaint family: inverted masks, the nodule kept,
  the rest of the crop regenerated), the same slices and split, L1 plus a 0.05 non-saturating
  adversarial term. `--ship --realism outpaint_results.json` (benchmarks/outpaint_realism.py)
  bundles it as `ct_nodule_outpaint` on the same rule; the classical copy-paste reference is
  in its card.
- `ct-shape` (real data): the P3 shape DCGAN on single nodule outlines (components >= 5 mm of
  the same library series, smooth-upsampled), the same validation split; checkpoints chosen by
  `benchmarks/shape_realism.py --select-on val`, shipped as `ct_nodule_shape` when closer to the
  held-out outlines than the built-in lobulated blobs.
- `ct-stylegan2` (real data, issue 15): P4's B-SG / M-SG / C-SG (`--family stylegan2-joint |
  stylegan2-mask | stylegan2-cond`) on every slice of the same library series, padded from 50²
  to 64² with air, CPU-64 preset; resumable (`--minutes` bounds a session). No `--ship`: the
  generated cases serve the sweep experiments, not the preview.
- `stone-inpaint` (real data, issue 13): kidney-stone inpainting (texture family, objective
  "inpaint") on `kidney_stones_ct/`, holes = the stone masks plus a 2 px rim, sessions split by
  `kidney_stone_split` (its held-out 20 % never seen); `--adversarial-weight W` adds an LSGAN
  term (own run folder). Measured, not shipped: it loses to the classical `real-stone` family
  on `benchmarks/stone_realism.py`, so it has no `--ship`.
- `cxr-removal` (real data, issue 13): radiograph hole filling (texture, objective "remove") on
  128 px tiles of ONE NIH chest radiograph (the project has three; the realism benchmark scores
  the model on the other two, `--rg-removal-checkpoint`), holes 10-40 px like the benchmark's.
  Measured, not shipped (docs/models.md).

Resumable: a run writes checkpoints to `--work/<task>/run`; stopping it (Ctrl-C, `--minutes`
budget) leaves a checkpoint there and rerunning the same command continues from it.
`--ship` copies the selected checkpoint (generator only) with its model card to `--out`, and
only when the task's benchmark on the held-out series (`--realism`) shows it beating its
baseline: TELEA and Navier-Stokes on masked PSNR and SSIM (ct-removal), the lobulated blobs on
shape W1 and AUC (ct-shape), the phantom demo model it replaces on the real-vs-synthetic CNN AUC
(ct-inpaint, ct-outpaint; the card records whether it also beats the classical method). See
docs/models.md.

    python scripts/train_default_models.py --task ct-removal --data ../shared/data --device cpu \
        [--steps 4000] [--minutes 22] [--work runs/default_models]
    python benchmarks/realism.py --removal-only --ct-removal-checkpoint runs/default_models/ct-removal/run/best --out realism_ct
    python scripts/train_default_models.py --task ct-removal --data ../shared/data --ship \
        --realism realism_ct/realism_results.json [--out lesion_studio/resources/models]
    python scripts/train_default_models.py --task ct-shape --data ../shared/data --steps 16000
    python benchmarks/shape_realism.py --select-on val --run runs/default_models/ct-shape/run \
        --out runs/default_models/ct-shape/selection
    python benchmarks/shape_realism.py --checkpoint dcgan=<selected> --out runs/default_models/ct-shape/heldout
    python scripts/train_default_models.py --task ct-shape --data ../shared/data --ship \
        --realism runs/default_models/ct-shape/heldout/shape_realism.json
    python scripts/train_default_models.py --task ct-inpaint --data ../shared/data --steps 10000
    python benchmarks/realism.py --ct-inpaint-checkpoint runs/default_models/ct-inpaint/run/best \
        --seed S --out realism_ins_sS                                   # S = 0, 1, 2
    python scripts/train_default_models.py --task ct-inpaint --data ../shared/data --ship \
        --realism realism_ins_s0/realism_results.json realism_ins_s1/realism_results.json realism_ins_s2/realism_results.json
    python scripts/train_default_models.py --task ct-outpaint --data ../shared/data --steps 10000
    python benchmarks/outpaint_realism.py --checkpoint ct_nodule_outpaint=runs/default_models/ct-outpaint/run/best \
        --checkpoint demo=<phantom demo_outpaint> --out outpaint_out
    python scripts/train_default_models.py --task ct-outpaint --data ../shared/data --ship \
        --realism outpaint_out/outpaint_results.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lesion_studio.models.config import default_config  # noqa: E402

#: The phantom demo models (`demo_texture_inpaint`, `demo_outpaint`, `demo_shape`) are gone:
#: `ct_nodule_inpaint`, `ct_nodule_outpaint` and `ct_nodule_shape` (real LIDC data) replaced them.

# -- real data: CT lung removal -------------------------------------------------------------
CT_AXIAL = Path("node21_ct_nodules") / "node21_ct_axial.npz"
CT_VAL_FRACTION = 0.15
#: The texture generator for 32² CT patches at 1 mm. Two stride-2 stages put the bottleneck
#: at 8², so dilations 1/2/4 (P3's 2..16 would read mostly padding there). L1 only: no VGG
#: weights offline, and the adversarial term is off (weight 0; a tiny D still runs in the
#: shared trainer, 8 channels, 3 layers, so it costs little).
CT_REMOVAL_MODEL = dict(
    objective="remove", preset="paper", base_channels=16, patch_px=32, dilations=[1, 2, 4], fill_value=1.0,
    perceptual_weights="disabled", perceptual_weight=0.0, adversarial_weight=0.0,
    disc_channels=8, disc_layers=3, lr_g=1e-3, batch_size=16, best_metric="masked_l1",
    lr_milestones=None,
)
CT_REMOVAL_RUN = dict(
    seed=0, val_fraction=0.0, checkpoint_every=250, val_every=250, val_max_patches=512,
    sample_every=0, log_every=50, keep_last=2, amp="off", num_threads=1,  # 1 thread: this 2-core machine is shared (2 threads stalled at ~7 s/step)
    value_range=[-1100.0, 400.0],  # HU: lung (−1000 … −400) to soft tissue, fixed so a card can say it
)


#: Non-lesion hole widths (px at 1 mm) and holes per slice for CT removal. models/data.py scales
#: P0's [10, 50] px with the image size (a 50 px slice: [3, 10] px, 4 holes), a rule made for
#: small phantoms; the CT holes a user removes (a nodule + margin) are 8-20 px at 1 mm, and a
#: first run with [3, 10] px filled such holes worse than Navier-Stokes (26.3 dB vs 29.4 dB) and
#: collapsed on the largest. The crop still stays inside the slice, so wide holes are rarer.
CT_REMOVAL_HOLES = {"width_px": (4, 20), "per_slice": 8}


def use_removal_holes(holes: dict = CT_REMOVAL_HOLES) -> None:
    """Make models/data.py draw `holes` (widths in px, holes per image; this process only,
    recorded in the card)."""
    import functools

    from lesion_studio.models import data

    if getattr(data.remove_patches, "_holes", None) == holes:
        return
    original = getattr(data.remove_patches, "func", data.remove_patches)
    data.remove_width_range = lambda shape: tuple(holes["width_px"])
    patched = functools.partial(original, n_holes=holes["per_slice"])
    patched._holes = holes
    data.remove_patches = patched


def library_split(data: Path, val_fraction: float, seed: int) -> dict:
    """node21_ct_axial.npz's LIBRARY series (never the held-out ones, asserted), padded patches
    left out, and a seeded validation split by series: `{npz, names, series, keep, lib_series,
    val_series, held}` (shared by every real-data task, so they split alike)."""
    from lesion_studio.core.classical.nodule_library import heldout_series_uids

    held = set(heldout_series_uids())
    src = data / CT_AXIAL
    with open(src.parent / "nodules.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    npz = np.load(src)
    names = [str(n) for n in npz["names"]]
    series = np.array([rows[n]["seriesuid"] for n in names])
    padded = np.array([int(rows[n]["padded"]) for n in names], bool)
    library = ~np.isin(series, sorted(held))
    keep = np.flatnonzero(library & ~padded)  # padded patches hold −1024 HU borders, not anatomy
    lib_series = sorted(set(series[keep]))
    assert not (set(lib_series) & held), "a held-out series reached the training set"
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(lib_series))))
    val_series = set(rng.choice(lib_series, size=n_val, replace=False).tolist())
    return {"npz": npz, "names": names, "series": series, "keep": keep, "lib_series": lib_series,
            "val_series": val_series, "held": held, "library": library, "padded": padded}


def build_ct_removal_dataset(data: Path, folder: Path, *, val_fraction: float = CT_VAL_FRACTION, seed: int = 0,
                              pad_to_px: int | None = None, pad_hu: int = -1024) -> dict:
    """A lesion-studio dataset folder of the LIBRARY series' axial slices; returns its summary.

    `pad_to_px`: each 50² slice padded to this size with `pad_hu` (its mask with background),
    for whole-image generators. Idempotent: an existing folder with the same summary is reused.
    """
    split = library_split(data, val_fraction, seed)
    npz, names, series, keep = split["npz"], split["names"], split["series"], split["keep"]
    lib_series, val_series, held = split["lib_series"], split["val_series"], split["held"]
    library, padded = split["library"], split["padded"]
    spacing = npz["spacing_mm"]
    assert np.allclose(spacing[keep], 1.0), "expected 1 mm pixels"
    summary = {
        "source": str(CT_AXIAL), "nodules": int(len(keep)), "cases": int(len(keep) * npz["images"].shape[1]),
        "library_series": len(lib_series), "train_series": len(lib_series) - len(val_series),
        "val_series": len(val_series), "heldout_series_excluded": len(set(series) & held),
        "heldout_nodules_excluded": int((~library).sum()), "padded_library_nodules_excluded": int((library & padded).sum()),
        "slice_offsets_mm": [int(v) for v in npz["slice_offsets"]], "split_seed": seed,
    }
    size = int(npz["images"].shape[-1])
    pad = ((0, 0), (0, 0))
    if pad_to_px is not None:
        summary |= {"padded_to_px": int(pad_to_px), "pad_hu": int(pad_hu)}
        before = (pad_to_px - size) // 2
        pad = ((before, pad_to_px - size - before),) * 2
    index = folder / "dataset.json"
    if index.is_file() and json.loads(index.read_text()).get("build_summary") == summary:
        return summary
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    cases = []
    images, masks = npz["images"], npz["masks"]  # read once: each npz[...] decompresses the array
    for i in keep:
        for s, off in enumerate(npz["slice_offsets"]):
            cid = f"n{i:04d}_z{int(off):+d}"
            img = np.pad(images[i, s].astype(np.int16), pad, constant_values=pad_hu)
            mask = np.pad((masks[i, s] > 0).astype(np.uint8), pad)
            np.save(folder / "images" / f"{cid}.npy", img)
            has = bool(mask.any())
            if has:
                np.save(folder / "masks" / f"{cid}.npy", mask)
            cases.append({"id": cid, "image": f"images/{cid}.npy", "mask": f"masks/{cid}.npy" if has else None,
                          "patient_id": str(series[i]), "has_lesion": has,
                          "split": "val" if series[i] in val_series else "train", "nodule": names[i]})
    index.write_text(json.dumps({
        "format": "lesion-studio-dataset", "version": 1,
        "description": ("Axial CT slices (5 per nodule, 1 mm, HU) around real lung nodules of the LIBRARY "
                        "series of NODE21's LUNA16/LIDC-IDRI nodule patches (node21_ct_axial.npz)"
                        + (f", padded to {pad_to_px}² with {pad_hu} HU" if pad_to_px is not None else "")
                        + "; the realism benchmark's held-out series are excluded. CC BY 4.0 (LUNA16) / CC BY 3.0 "
                        "(LIDC-IDRI); see lesion_studio/resources/nodules/ATTRIBUTION.md."),
        "modality": "CT", "spacing_mm": [1.0, 1.0], "build_summary": summary, "cases": cases,
    }, indent=1))
    return summary


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The most advanced resumable checkpoint of a run folder (periodic, cancelled or final)."""
    best, best_step = None, -1
    for meta in run_dir.glob("*.json"):
        if meta.name.endswith(".state.json") or meta.stem == "best":
            continue
        if not meta.with_name(meta.stem + ".state.safetensors").is_file():
            continue
        try:
            step = int(json.loads(meta.read_text()).get("step", -1))
        except (OSError, ValueError):
            continue
        if step > best_step:
            best, best_step = meta.with_suffix(""), step
    return best


#: The P3 §III-A shape DCGAN for real LIDC nodule outlines. 64² instead of 128²: nodule masks
#: at 1 mm are 3-30 px across, so 128² would only upsample them further (the engine resizes
#: shapes to the requested diameter anyway); 128 base channels (4x4x512 in P3) keep a step well
#: under a second on one CPU thread. Rates: P3's 1e-4 / 1e-5 learn too slowly for a CPU budget;
#: DCGAN's 2e-4 for both, batch 32.
CT_SHAPE_MODEL = dict(base_channels=128, patch_px=64, lr_g=2e-4, lr_d=2e-4, batch_size=32)
CT_SHAPE_RUN = dict(
    seed=0, val_fraction=0.0, checkpoint_every=1000, val_every=1000, val_max_patches=256, sample_every=0,
    log_every=50, keep_last=0, amp="off", num_threads=1, flip_augment=True,
)
#: CT nodule inpainting (P3 §III-C, texture family, objective "inpaint"): the same small
#: generator as the removal model, on P0's 3x context crop around each nodule component
#: (resized to 32²), L1 only (no VGG weights offline; the adversarial term is off so a short CPU
#: run stays stable). Selected on validation masked L1 inside the nodule.
CT_INPAINT_MODEL = dict(
    objective="inpaint", preset="paper", base_channels=16, patch_px=32, dilations=[1, 2, 4], fill_value=1.0,
    perceptual_weights="disabled", perceptual_weight=0.0, adversarial_weight=0.0,
    disc_channels=8, disc_layers=3, lr_g=1e-3, batch_size=16, best_metric="masked_l1",
    lr_milestones=None,
)

#: Components under 5 mm (equivalent diameter) are left out of the shape training masks.
CT_SHAPE_MIN_COMPONENT_MM = 5.0


def train_ct_removal(args) -> int:
    use_removal_holes(CT_REMOVAL_HOLES)
    work = args.work / "ct-removal"
    summary = build_ct_removal_dataset(args.data, work / "dataset")
    print(json.dumps({"dataset": summary, "holes": CT_REMOVAL_HOLES}), flush=True)
    return run_training(args, work, args.family or "texture", CT_REMOVAL_MODEL, CT_REMOVAL_RUN)


def build_ct_shape_dataset(data: Path, folder: Path, *, val_fraction: float = CT_VAL_FRACTION, seed: int = 0) -> dict:
    """A dataset of single nodule outlines (one case per mask component of at least
    CT_SHAPE_MIN_COMPONENT_MM, all five axial slices) of the LIBRARY series, smooth-upsampled
    by `nodule_library.smooth_component`; the same series split as the removal dataset. Returns its summary."""
    from scipy import ndimage

    from lesion_studio.core.classical.nodule_library import smooth_component

    split = library_split(data, val_fraction, seed)  # the same series split as the removal dataset
    npz, names, series, keep = split["npz"], split["names"], split["series"], split["keep"]
    lib_series, val_series, held = split["lib_series"], split["val_series"], split["held"]
    summary = {"source": str(CT_AXIAL), "nodules": int(len(keep)), "library_series": len(lib_series),
               "val_series": len(val_series), "heldout_series_excluded": len(set(series) & held),
               "min_component_mm": CT_SHAPE_MIN_COMPONENT_MM, "outline": "smooth_outline (bicubic, 96 px)",
               "split_seed": seed}
    index = folder / "dataset.json"
    stored = json.loads(index.read_text()).get("build_summary") if index.is_file() else None
    if isinstance(stored, dict) and {k: v for k, v in stored.items() if k != "cases"} == summary:
        return stored  # built with these settings (the case count is only known after a build)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    images, masks = npz["images"], npz["masks"]
    cases = []
    for i in keep:
        for s, off in enumerate(npz["slice_offsets"]):
            labels, n = ndimage.label(masks[i, s] > 0, structure=np.ones((3, 3)))
            for c in range(1, n + 1):
                component = labels == c
                if 2.0 * np.sqrt(component.sum() / np.pi) < CT_SHAPE_MIN_COMPONENT_MM:
                    continue
                mask, hu, k = smooth_component(component, images[i, s])
                cid = f"n{i:04d}_z{int(off):+d}_c{c}"
                np.save(folder / "images" / f"{cid}.npy", hu.astype(np.int16))
                np.save(folder / "masks" / f"{cid}.npy", mask.astype(np.uint8))
                cases.append({"id": cid, "image": f"images/{cid}.npy", "mask": f"masks/{cid}.npy",
                              "patient_id": str(series[i]), "has_lesion": True, "spacing_mm": [1.0 / k, 1.0 / k],
                              "split": "val" if series[i] in val_series else "train", "nodule": names[i]})
    summary["cases"] = len(cases)
    index.write_text(json.dumps({
        "format": "lesion-studio-dataset", "version": 1,
        "description": ("Single nodule outlines (smooth-upsampled axial mask components >= 5 mm) of the LIBRARY "
                        "series of NODE21's LUNA16/LIDC-IDRI nodule patches; held-out series excluded. CC BY 4.0 "
                        "(LUNA16) / CC BY 3.0 (LIDC-IDRI); see lesion_studio/resources/nodules/ATTRIBUTION.md."),
        "modality": "CT", "build_summary": summary, "cases": cases,
    }, indent=1))
    return summary


def train_ct_inpaint(args) -> int:
    work = args.work / "ct-inpaint"
    summary = build_ct_removal_dataset(args.data, work / "dataset")  # the same library slices and split
    print(json.dumps({"dataset": summary}), flush=True)
    return run_training(args, work, "texture", CT_INPAINT_MODEL, CT_REMOVAL_RUN)


#: P1 §3.2 outpainting on the same CT crops: the texture generator with inverted masks (the
#: nodule is kept, the rest of P0's 3x crop regenerated). L1 alone paints the conditional mean, a
#: flat grey surround, so a small non-saturating adversarial term (P1's loss) adds texture. The
#: crop's outer eighth stays as context (`context_fraction`): regenerating the whole crop (P1's
#: literal setting) left a bright square frame where the crop met the image (AUC 0.976, looked at).
CT_OUTPAINT_MODEL = {k: v for k, v in CT_INPAINT_MODEL.items() if k != "objective"} | dict(
    adversarial_weight=0.05, context_fraction=0.125)


def train_ct_outpaint(args) -> int:
    work = args.work / "ct-outpaint"
    summary = build_ct_removal_dataset(args.data, work / "dataset")  # the same library slices and split
    print(json.dumps({"dataset": summary}), flush=True)
    return run_training(args, work, "outpaint", CT_OUTPAINT_MODEL, CT_REMOVAL_RUN)


#: P4 on the bundled CT nodules (issue 15): the 50 mm axial slices padded to 64² with air
#: (−1024 HU, the value NODE21's own padded patches use), whole images (P4 §4.1), the CPU-64 preset.
SG_PAD_HU = -1024
SG_IMAGE_PX = 64
#: DiffAugment (Zhao et al. 2020): without it D memorised the 3,610 slices within ~2,000 steps
#: (d_adv 0.09, real logits +3.5) and 60 min of B-SG gave saturated, textureless samples.
#: M-SG translation only: a mask holds one small blob, which cutout hid about a quarter of the
#: time, and with cutout M-SG drew only empty masks for its first 1,200 steps (real logits +7).
#: B-SG and M-SG learn masks as tanh(signed distance / 4 px), read back exactly at > 0: with
#: sharp masks M-SG drew only empty masks (no gradient from "no blob" to "a blob"; stylegan2_losses.soft_mask).
SG_MASK_SIGMA_PX = 4.0
SG_DIFFAUGMENT = {"stylegan2-joint": ["translation", "cutout"], "stylegan2-mask": ["translation"],
                  "stylegan2-cond": ["translation", "cutout"]}
SG_RUN = dict(seed=0, val_fraction=0.0, checkpoint_every=500, val_every=500, val_max_patches=64, sample_every=500,
              log_every=50, keep_last=0, amp="off", num_threads=1, flip_augment=True,
              value_range=[-1100.0, 400.0])


def train_ct_stylegan2(args) -> int:
    """B-SG (`--family stylegan2-joint`), M-SG (`stylegan2-mask`) or C-SG (`stylegan2-cond`)."""
    from lesion_studio.models.config import STYLEGAN2_FAMILIES, stylegan2_config

    family = args.family or "stylegan2-joint"
    if family not in STYLEGAN2_FAMILIES:
        raise SystemExit(f"--family must be one of {', '.join(STYLEGAN2_FAMILIES)} for --task ct-stylegan2")
    dataset_folder = args.work / "ct-stylegan2-data"
    summary = build_ct_removal_dataset(args.data, dataset_folder, pad_to_px=SG_IMAGE_PX, pad_hu=SG_PAD_HU)
    work = args.work / f"ct-{family}"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "dataset").exists():
        (work / "dataset").symlink_to(dataset_folder.resolve(), target_is_directory=True)
    print(json.dumps({"dataset": summary, "family": family}), flush=True)
    model = dataclasses.asdict(stylegan2_config(family, "cpu-64", patch_source="image", diffaugment=SG_DIFFAUGMENT[family],
                                                   mask_sigma_px=SG_MASK_SIGMA_PX))
    model.pop("family", None)
    return run_training(args, work, family, model, SG_RUN)


#: Kidney stones (issue 13, P0's real-data row): TEZ_ROI_AUG coronal CT slices, 8-bit display
#: values (no HU, no spacing). Patients are acquisition sessions; `kidney_stone_split` (a sha256
#: of the session id) holds out 20 % of them for the realism benchmark (`benchmarks/stone_realism.py`).
STONE_DIR = "kidney_stones_ct"
#: The CT nodule inpainter's small texture generator on P0's 3x context crop (resized to 32²):
#: stones are 4-36 px boxes (median ~10 px), so a 32² crop keeps them near native size.
STONE_INPAINT_MODEL = dict(CT_INPAINT_MODEL)
#: Run settings of the 8-bit real-data tasks (stones, radiographs): the CT runs' with a 0-255 range.
EIGHT_BIT_RUN = dict(CT_REMOVAL_RUN, value_range=[0.0, 255.0])


def build_stone_dataset(data: Path, work: Path) -> dict:
    """The kidney-stone dataset (`build_kidney_stones_dataset`, all sessions, in `work/all`) and
    its training view in `work/dataset`: stone slices of the train and val sessions only, images
    hard-linked (copied where links fail), masks with their rim (`stone_mask_with_rim`). Returns the
    training view's summary."""
    import os
    import shutil

    import cv2

    from lesion_studio.core.public_datasets import (
        KIDNEY_STONE_SPLIT, STONE_RIM_PX, build_kidney_stones_dataset, kidney_stone_split, stone_mask_with_rim,
    )

    full = work / "all"
    build_kidney_stones_dataset(data / STONE_DIR, full)
    doc = json.loads((full / "dataset.json").read_text())
    sessions = sorted({c["patient_id"] for c in doc["cases"]})
    split = {p: kidney_stone_split(p) for p in sessions}
    cases = [dict(c, split=split[c["patient_id"]]) for c in doc["cases"]
             if c["has_lesion"] and split[c["patient_id"]] != "test"]
    held = sorted(p for p in sessions if split[p] == "test")
    assert not ({c["patient_id"] for c in cases} & set(held)), "a held-out session reached the training set"
    summary = {"source": STONE_DIR, "sessions": len(sessions), "train_sessions": sum(v == "train" for v in split.values()),
               "val_sessions": sum(v == "val" for v in split.values()), "heldout_sessions": len(held),
               "cases": len(cases), "split": f"split_of(session, val={KIDNEY_STONE_SPLIT['val']}, test={KIDNEY_STONE_SPLIT['test']})",
               "dataset_sha256": doc["build_summary"]["images_sha256"], "mask_rim_px": STONE_RIM_PX}
    folder = work / "dataset"
    index = folder / "dataset.json"
    if index.is_file() and json.loads(index.read_text()).get("build_summary") == summary:
        return summary
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        src, dst = full / case["image"], folder / case["image"]
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        mask = cv2.imread(str(full / case["mask"]), cv2.IMREAD_UNCHANGED) > 0
        cv2.imwrite(str(folder / case["mask"]), stone_mask_with_rim(mask).astype(np.uint8))
    shutil.copyfile(full / "ATTRIBUTION.md", folder / "ATTRIBUTION.md")
    index.write_text(json.dumps(dict(doc, cases=cases, build_summary=summary, description=(
        doc["description"] + f" Training view: stone slices of the train/val sessions; the {len(held)} held-out "
        "sessions of the realism benchmark are excluded.")), indent=1))
    return summary


#: `--adversarial-weight W`: the same generator with an LSGAN PatchGAN term at weight W (a
#: 32-channel, 3-layer D: 4² logits on a 32² patch), against L1's conditional mean.
STONE_ADVERSARIAL_D = dict(disc_channels=32, disc_layers=3)


def train_stone_inpaint(args) -> int:
    model = dict(STONE_INPAINT_MODEL)
    work = args.work / "stone-inpaint"
    if args.adversarial_weight:
        model |= dict(STONE_ADVERSARIAL_D, adversarial_weight=args.adversarial_weight)
        work = args.work / f"stone-inpaint-adv{args.adversarial_weight:g}"
    summary = build_stone_dataset(args.data, work)
    print(json.dumps({"dataset": summary, "model": model}), flush=True)
    return run_training(args, work, "texture", model, EIGHT_BIT_RUN)


#: Chest radiograph removal (issue 13): the project has three chest radiographs, and the
#: realism benchmark scores all three. The model trains on one NIH image only and the benchmark
#: reports it on the other two (`--rg-removal-checkpoint`); that is all the data allows.
CXR_DIR = "cxr_nih"
CXR_TRAIN_IMAGE = "00000001_000.png"
#: 128² tiles of the training image (stride 32) are the cases: one case gives P0's handful of
#: holes, a tile grid gives enough. Tiles left of column CXR_VAL_GAP[0] train, tiles from column
#: CXR_VAL_GAP[1] validate (no pixel is in both).
CXR_TILE_PX, CXR_TILE_STRIDE = 128, 32
CXR_VAL_GAP = (224, 288)
#: The benchmark's radiograph holes are ellipses with axes 10-40 px: the same widths here.
CXR_REMOVAL_HOLES = {"width_px": (10, 40), "per_slice": 8}
CXR_REMOVAL_MODEL = dict(CT_REMOVAL_MODEL, patch_px=64, dilations=[1, 2, 4, 8])


def build_cxr_dataset(data: Path, folder: Path) -> dict:
    """Tiles of the one training radiograph as a lesion-free dataset (split by column, with a
    gap); returns its summary. Idempotent."""
    import cv2

    source = data / CXR_DIR / CXR_TRAIN_IMAGE
    image = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SystemExit(f"{source}: cannot read the training radiograph")
    h, w = image.shape
    tiles = [(r, c) for r in range(0, h - CXR_TILE_PX + 1, CXR_TILE_STRIDE)
             for c in range(0, w - CXR_TILE_PX + 1, CXR_TILE_STRIDE)
             if c + CXR_TILE_PX <= CXR_VAL_GAP[0] or c >= CXR_VAL_GAP[1]]
    summary = {"source": f"{CXR_DIR}/{CXR_TRAIN_IMAGE}", "tile_px": CXR_TILE_PX, "stride": CXR_TILE_STRIDE,
               "val_from_col": CXR_VAL_GAP[1], "train_to_col": CXR_VAL_GAP[0], "tiles": len(tiles),
               "benchmark_images_not_used": ["RG1_UNCR.dcm", "00027426_000.png"]}
    index = folder / "dataset.json"
    if index.is_file() and json.loads(index.read_text()).get("build_summary") == summary:
        return summary
    (folder / "images").mkdir(parents=True, exist_ok=True)
    cases = []
    for r, c in tiles:
        cid = f"r{r:03d}_c{c:03d}"
        cv2.imwrite(str(folder / "images" / f"{cid}.png"), image[r:r + CXR_TILE_PX, c:c + CXR_TILE_PX])
        val = c >= CXR_VAL_GAP[1]  # one patient: its two image halves stand in for patients (a spatial split)
        cases.append({"id": cid, "image": f"images/{cid}.png", "mask": None,
                      "patient_id": "nih-00000001:" + ("right-half" if val else "left-half"),
                      "has_lesion": False, "split": "val" if val else "train"})
    index.write_text(json.dumps({
        "format": "lesion-studio-dataset", "version": 1, "modality": "DX", "spacing_mm": [0.286, 0.286],
        "description": ("128 px tiles of one NIH ChestX-ray14 radiograph (00000001_000, 512² 8-bit, NIH Clinical "
                        "Center, no restrictions on use; cite Wang et al., CVPR 2017)."),
        "build_summary": summary, "cases": cases}, indent=1))
    return summary


def train_cxr_removal(args) -> int:
    use_removal_holes(CXR_REMOVAL_HOLES)
    work = args.work / "cxr-removal"
    summary = build_cxr_dataset(args.data, work / "dataset")
    print(json.dumps({"dataset": summary, "holes": CXR_REMOVAL_HOLES}), flush=True)
    return run_training(args, work, "texture", CXR_REMOVAL_MODEL, EIGHT_BIT_RUN)


def train_ct_shape(args) -> int:
    work = args.work / "ct-shape"
    summary = build_ct_shape_dataset(args.data, work / "dataset")
    print(json.dumps({"dataset": summary}), flush=True)
    return run_training(args, work, "shape", CT_SHAPE_MODEL, CT_SHAPE_RUN)


def run_training(args, work: Path, family: str, model_overrides: dict, run_overrides: dict) -> int:
    """Train `family` on `work/dataset` into `work/run`, resuming from its latest checkpoint;
    every step/validation record goes to `work/train_log.jsonl` (appended across sessions)."""
    from lesion_studio.models.progress import CancelToken, StepEvent, TrainFinished, ValidationEvent
    from lesion_studio.models.trainer import train

    config = default_config(family, dataset=str(work / "dataset"), out_dir=str(work / "run"),
                            steps=args.steps, device=args.device, **run_overrides)
    config.model = dataclasses.replace(config.model, **model_overrides)
    from lesion_studio.models.config import validate

    validate(config)
    resume = latest_checkpoint(work / "run")
    if resume is not None:
        print(f"resuming from {resume}", flush=True)
    cancel = CancelToken()
    if args.minutes:
        timer = threading.Timer(args.minutes * 60.0, cancel.cancel)
        timer.daemon = True
        timer.start()
    log_path = work / "train_log.jsonl"
    started = time.time()

    def callback(event) -> None:
        rec = None
        if isinstance(event, StepEvent) and (event.step % 50 == 0):
            rec = {"step": event.step, "losses": {k: round(v, 5) for k, v in event.losses.items()},
                   "it_s": round(event.it_per_s, 3)}
        elif isinstance(event, ValidationEvent):
            rec = {"step": event.step, "val": {k: round(v, 5) for k, v in event.metrics.items()}, "best": event.is_best}
        elif isinstance(event, TrainFinished):
            rec = {"finished": event.step, "cancelled": event.cancelled, "best": event.best_checkpoint,
                   "best_metrics": event.best_metrics}
        if rec is not None:
            rec["wall_s"] = round(time.time() - started, 1)
            line = json.dumps(rec)
            print(line, flush=True)
            with log_path.open("a") as fh:
                fh.write(line + "\n")

    result = train(config, callback=callback, cancel=cancel, resume=resume, force=True)
    print(json.dumps({"step": result.step, "cancelled": result.cancelled, "best": str(result.best_checkpoint),
                      "best_metrics": result.best_metrics, "session_wall_s": round(time.time() - started, 1)}), flush=True)
    return 0


CT_REMOVAL_NAME = "ct_lung_removal"
CT_REMOVAL_DESCRIPTION = (
    "CT lung hole filling / lesion removal (texture family, objective 'remove'): a small gated-conv "
    "inpainter trained on real LIDC-IDRI/LUNA16 lung CT slices at 1 mm (HU), library series only. "
    "Fills holes in lung tissue; research use, not for clinical use."
)
CITATIONS = [
    "Armato SG III, McLennan G, Bidaut L, et al. The Lung Image Database Consortium (LIDC) and Image Database "
    "Resource Initiative (IDRI): a completed reference database of lung nodules on CT scans. Medical Physics "
    "38(2):915-931, 2011. doi:10.1118/1.3528204",
    "Armato SG III et al. Data From LIDC-IDRI [Data set]. The Cancer Imaging Archive, 2015. "
    "doi:10.7937/K9/TCIA.2015.LO9QL9SX",
    "Clark K et al. The Cancer Imaging Archive (TCIA): Maintaining and Operating a Public Information Repository. "
    "J Digit Imaging 26(6):1045-1057, 2013. doi:10.1007/s10278-013-9622-7",
    "Setio AAA et al. Validation, comparison, and combination of algorithms for automatic detection of pulmonary "
    "nodules in computed tomography images: the LUNA16 challenge. Medical Image Analysis 42:1-13, 2017. "
    "doi:10.1016/j.media.2017.06.015",
    "Sogancioglu E et al. Nodule detection and generation on chest X-rays: NODE21 Challenge. IEEE TMI 2024. "
    "arXiv:2401.02192",
    "The authors acknowledge the National Cancer Institute and the Foundation for the National Institutes of Health "
    "and their critical role in the creation of the free publicly available LIDC/IDRI Database used in this study.",
]


def write_shipped(source: Path, out: Path, name: str, meta: dict, description: str, card: dict | None = None) -> Path:
    """Ship checkpoint `source` as `out/name`: generator weights only (inference never loads a
    discriminator), the sidecar with `description`, `card` and the new weights' size and SHA-256
    (so a replaced or truncated file is refused as for any checkpoint)."""
    from safetensors.torch import load_file, save_file

    from lesion_studio.core.hashing import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(source.with_name(source.name + ".safetensors")))
    out_weights = out / f"{name}.safetensors"
    save_file({k: v for k, v in weights.items() if k.startswith("generator.")}, str(out_weights))
    meta = dict(meta, description=description, networks=["generator"], training_state=None)
    meta["files"] = {"weights": {"bytes": out_weights.stat().st_size, "sha256": sha256_file(out_weights)}}
    if card is not None:
        meta["card"] = card
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out_weights


def ct_slices_card_data(dataset: dict) -> dict:
    """A card's data table for the CT tasks trained on the library slices of node21_ct_axial.npz
    (`dataset`: the training dataset's build summary)."""
    return {
        "source": "node21_ct_nodules/node21_ct_axial.npz (NODE21 generation baseline nodule patches, from "
                  "LUNA16 / LIDC-IDRI): five axial slices (-2..+2 mm) of a 50x50 mm patch around each nodule",
        "licence": "LIDC-IDRI: CC BY 3.0; LUNA16: CC BY 4.0; NODE21 generation baseline repository: Apache-2.0",
        "attribution": "lesion_studio/resources/nodules/ATTRIBUTION.md",
        "citations": CITATIONS,
        "series_used": dataset["library_series"], "series_train": dataset["train_series"],
        "series_validation": dataset["val_series"], "series_held_out": dataset["heldout_series_excluded"],
        "nodules_used": dataset["nodules"], "slices_used": dataset["cases"],
        "held_out": "every series in lesion_studio/resources/nodules/split.json (heldout_series_uids) is excluded "
                    "from training and validation (asserted by the training script); the benchmark uses only those",
    }


def ship_ct_removal(args) -> int:
    """Copy the validation-selected checkpoint (generator only) + a model card to `--out`, only
    when the realism benchmark (`--realism`, removal task) shows it above TELEA and NS on both
    masked PSNR and SSIM."""
    work = args.work / "ct-removal"
    run_dir = work / "run"
    source = run_dir / "best"
    meta = json.loads((run_dir / "best.json").read_text())
    realism = json.loads(Path(args.realism[0]).read_text())
    ct = realism["removal"]["ct"]
    mine = ct["learned-ct-removal"]
    beats = {b: mine["psnr"]["mean"] > ct[b]["psnr"]["mean"] and mine["ssim"]["mean"] > ct[b]["ssim"]["mean"]
             for b in ("telea", "navier-stokes")}
    if not all(beats.values()):
        print(json.dumps({"shipped": False, "beats": beats}), flush=True)
        return 1
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in log if "val" in r]
    dataset = json.loads((work / "dataset" / "dataset.json").read_text())["build_summary"]
    final = json.loads((run_dir / "final.json").read_text()) if (run_dir / "final.json").is_file() else {}

    def row(m):
        return {k: {s: round(ct[m][k][s], 4) for s in ("mean", "sd")} for k in ("psnr", "ssim", "mae")} | {"n": ct[m]["psnr"]["n"]}

    card = {
        "task": "CT lung hole filling / lesion removal (mode 'remove'), 1 mm axial CT slices in HU",
        "data": {
            **ct_slices_card_data(dataset),
            "training_holes": (f"non-lesion holes (objective 'remove', models/data.py remove_patches): up to "
                               f"{CT_REMOVAL_HOLES['per_slice']} per slice, widths {CT_REMOVAL_HOLES['width_px'][0]}-"
                               f"{CT_REMOVAL_HOLES['width_px'][1]} px at 1 mm (set by the training script), square/disc/"
                               "ellipse/lobulated, >= 2 px from the nodule mask, 32 px crop inside the slice"),
        },
        "training": {
            "steps": int(meta["step"]), "steps_run": int(final.get("step", meta["step"])),
            "hardware": "CPU, 2 shared cores (x86_64), 1 torch thread, fp32",
            "wall_time_s": vals[-1]["wall_s"] if vals else None,
            "selection": "lowest masked L1 on the validation split (54 library series, never the held-out ones), "
                         "checked every 250 steps",
            "validation_at_selection": meta.get("metrics", {}),
            "script": "scripts/train_default_models.py --task ct-removal --data ../shared/data --device cpu",
        },
        "realism_benchmark": {
            "task": "benchmarks/realism.py removal, CT: elliptical holes (axes 4-16 px) in lung of held-out series "
                    "(centre slice), engine hole = ellipse + 2 px margin; masked PSNR/SSIM/MAE, data range = the "
                    "patch's robust range",
            "seed": realism.get("seed"), "commit": realism.get("commit"),
            "results": {m: row(m) for m in ("learned-ct-removal", "telea", "navier-stokes", "ring-mean", "auto-fill")
                        if m in ct and ct[m]["psnr"].get("n")},
        },
        "known_failure_modes": [
            "trained on 32 px crops at 1 mm, few training holes wider than 16 px (the crop must stay inside a 50 px "
            "slice): larger holes are filled after the engine's downsampling (up to 2x) and come out smoother; "
            "holes over ~26 px are refused (use a classical fill)",
            "lung only: trained on slices around lung nodules; mediastinum, bone, abdomen and contrast CT are "
            "outside its data",
            "an L1-trained fill is a conditional mean: it is smoother than real lung parenchyma and does not "
            "invent vessels that cross the whole hole",
            "one slice in, no neighbouring slices: a vessel running through the slice plane is not continued",
            "thin set: 308 training series from one public database (LIDC-IDRI)",
        ],
    }
    out_weights = write_shipped(source, args.out, CT_REMOVAL_NAME, meta, CT_REMOVAL_DESCRIPTION, card)
    print(json.dumps({"shipped": True, "weights": str(out_weights), "bytes": out_weights.stat().st_size}), flush=True)
    return 0


CT_LEARNED = {
    # task: (shipped name, description, benchmark method key, phantom key, classical key, card task)
    "ct-inpaint": ("ct_nodule_inpaint",
                   "CT lung nodule inpainting (texture family): a small gated-conv inpainter trained on real "
                   "LIDC-IDRI/LUNA16 nodules at 1 mm (HU), library series only. CT only; research use, not for "
                   "clinical use. Not the default: real-nodule scores closer to real on held-out series.",
                   "learned-ct-inpaint", "demo-texture", "real-nodule",
                   "CT lung nodule insertion (mode 'inpaint'), 1 mm axial CT slices in HU"),
    "ct-outpaint": ("ct_nodule_outpaint",
                    "CT outpainting around a kept nodule (P1 §3.2, texture generator with inverted masks, the "
                    "crop's outer eighth kept as context): trained on real LIDC-IDRI/LUNA16 nodule crops at 1 mm "
                    "(HU), library series only. The default outpainter for CT (texture-fill for radiographs); "
                    "research use, not for clinical use.",
                    "ct_nodule_outpaint", "demo", "texture-fill",
                    "CT outpainting (mode 'outpaint'): the nodule kept, P0's 3x crop around it regenerated but for "
                    "its outer eighth (the context)"),
}
#: Benchmark rows a card shows beside the classical method without deciding anything: the copy-paste
#: of the kept nodule into another patient's lung is not an outpainting method (it moves the finding
#: out of its image), but it shows how far from real both outpainters still are.
CT_LEARNED_REFERENCES = {"ct-inpaint": (), "ct-outpaint": ("copy-paste",)}
CT_LEARNED_FAILURES = {
    "ct-inpaint": [
        "CT only: trained in HU; the engine refuses radiographs (card image_kinds), where real-nodule's CT "
        "projection is the insertion method",
        "32² input on P0's 3x crop: nodules over ~10 mm are made at up to 2x downsampling (smoother), over ~21 mm "
        "refused",
        "L1 only (no adversarial term, no VGG weights offline): large holes get a smooth conditional mean; interiors "
        "are more uneven than real nodules (texture ratio in the card's benchmark)",
        "lung nodules only; one slice in, no neighbouring slices",
    ],
    "ct-outpaint": [
        "CT only: trained in HU on lung crops around nodules; the engine refuses radiographs (card image_kinds), "
        "which the app outpaints with texture-fill",
        "a copy-paste of the nodule into another patient's lung is far harder to tell from real on held-out series "
        "(the card's reference row): to get realistic new positives, insert real nodules (real-nodule) into other "
        "patients; outpainting varies a finding's surroundings in its own image",
        "the crop's outer eighth is kept as context (context_fraction 0.125), so the regenerated ring is about two "
        "nodule diameters across; 32² input: nodules over ~10 mm at up to 2x downsampling, over ~21 mm refused",
        "L1 plus a weak adversarial term: the new surroundings are smoother than real lung (surround texture ratio in "
        "the card) and rarely continue a vessel from the band",
    ],
}


def ship_ct_learned(args, task: str) -> int:
    """Ship a learned CT inpainter/outpainter in place of the phantom demo model of its mode, when
    its held-out realism (`--realism`: realism.py's JSON for ct-inpaint, outpaint_realism.py's for
    ct-outpaint; one file per benchmark seed) is closer to real than the phantom model's in the
    same runs (lower mean CNN AUC). Its card says whether it also beats the classical method on
    the mean over seeds (status "default") or not ("alternative": the classical family stays the
    app's default). Differences between seeds of one benchmark reach ±0.04 AUC, so one seed
    does not decide."""
    name, description, key, phantom_key, classical_key, card_task = CT_LEARNED[task]
    work = args.work / task
    run_dir = work / "run"
    source = run_dir / "best"
    meta = json.loads((run_dir / "best.json").read_text())
    benches = [json.loads(Path(path).read_text()) for path in args.realism]
    # the phantom demo models are gone, so later benchmark runs have no phantom row
    has_phantom = all(phantom_key in b.get("cnn", {}) for b in benches)
    rows = (key, classical_key, *((phantom_key,) if has_phantom else ()), *CT_LEARNED_REFERENCES[task])
    for path, bench in zip(args.realism, benches):
        missing = [k for k in rows if k not in bench.get("cnn", {})]
        if missing:
            print(json.dumps({"shipped": False, "reason": f"{path} has no CNN row for {missing}"}), flush=True)
            return 1
    mean_auc = {k: float(np.mean([b["cnn"][k]["auc"] for b in benches])) for k in rows}
    is_default = mean_auc[key] < mean_auc[classical_key]
    if not is_default:
        if has_phantom and not mean_auc[key] < mean_auc[phantom_key]:
            print(json.dumps({"shipped": False, "reason": "not closer to real than the phantom demo model",
                              "mean_auc": mean_auc}), flush=True)
            return 1
        if not has_phantom and not args.allow_alternative:
            print(json.dumps({"shipped": False, "reason": f"loses to {classical_key} and the benchmark has no phantom "
                              "row to replace: pass --allow-alternative to bundle it as an alternative anyway",
                              "mean_auc": mean_auc}), flush=True)
            return 1
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines() if line.strip()]
    dataset = json.loads((work / "dataset" / "dataset.json").read_text())["build_summary"]
    step = int(meta["step"])

    def row(method: str) -> dict:
        out = {"auc": round(mean_auc[method], 4),
               "auc_per_seed": {str(b.get("seed")): round(b["cnn"][method]["auc"], 4) for b in benches},
               f"auc_ci95_seed_{benches[0].get('seed')}": [round(v, 4) for v in benches[0]["cnn"][method]["ci95"]],
               "n": benches[0]["cnn"][method]["n_synthetic"]}
        first = benches[0]
        stats = (first.get("insertion", {}).get(f"ct_{method}", {}) if task == "ct-inpaint"
                 else first.get("table", {}).get(method, {}))
        for stat in ("contrast", "texture_ratio", "boundary_grad_ratio"):
            if isinstance(stats.get(stat), dict) and "mean" in stats[stat]:
                out[stat] = round(stats[stat]["mean"], 4)
        if "texture_ratio_median" in stats:
            out["surround_texture_ratio"] = round(stats["texture_ratio_median"], 4)
        if "refused" in stats:
            out["refused"] = stats["refused"]
        return out

    seeds = ", ".join(str(b.get("seed")) for b in benches)
    phantom_note = (f"; the phantom demo model it replaced: {mean_auc[phantom_key]:.3f}" if has_phantom else "")
    card = {
        "task": card_task,
        "image_kinds": ["ct"],  # the engine refuses radiographs (models/inference.py)
        "status": "default" if is_default else "alternative",
        "status_reason": (f"beats {classical_key} on held-out realism (mean CNN AUC over seeds {seeds}: "
                          f"{mean_auc[key]:.3f} vs {mean_auc[classical_key]:.3f}{phantom_note})" if is_default else
                          f"{classical_key} is closer to real on held-out series (mean CNN AUC over seeds {seeds}: "
                          f"{mean_auc[classical_key]:.3f} vs {mean_auc[key]:.3f}){phantom_note or '; bundled by choice'}"),
        "data": {
            **ct_slices_card_data(dataset),
            "training_regions": (
                "the nodule masks (P3 §III-C), on P0's 3x context crop resized to 32²" if task == "ct-inpaint" else
                "everything but the nodule mask (P1 §3.2, inverted masks) inside P0's 3x context crop less its outer "
                "band (model.context_fraction), resized to 32²"),
        },
        "training": {
            "steps": step, "hardware": "CPU, 2 shared cores (x86_64), 1 torch thread, fp32",
            "wall_time_s": cumulative_wall_s(log, step),
            "selection": "lowest masked L1 on the validation split (54 library series, never the held-out ones), "
                         "checked every 250 steps",
            "validation_at_selection": meta.get("metrics", {}),
            "script": f"scripts/train_default_models.py --task {task} --data ../shared/data --device cpu",
        },
        "realism_benchmark": {
            "task": ("benchmarks/realism.py insertion: held-out series' slices, the same open-lung sites and diameters "
                     "for every method; a small CNN tells real held-out nodules from insertions (series-grouped "
                     "5-fold CV; AUC 0.5 = indistinguishable)" if task == "ct-inpaint" else
                     "benchmarks/outpaint_realism.py: every held-out nodule outpainted through the engine; a small CNN "
                     "tells the real 32 mm windows from the outpainted ones (series-grouped 5-fold CV; AUC 0.5 = "
                     "indistinguishable)"),
            "seeds": [b.get("seed") for b in benches], "commit": benches[0].get("commit"),
            "results": {m: row(m) for m in rows},
        },
        "known_failure_modes": CT_LEARNED_FAILURES[task],
    }
    out_weights = write_shipped(source, args.out, name, meta, description, card)
    print(json.dumps({"shipped": True, "status": card["status"], "mean_auc": mean_auc, "weights": str(out_weights),
                      "bytes": out_weights.stat().st_size}), flush=True)
    return 0


def cumulative_wall_s(log: list[dict], step: int) -> float | None:
    """Training wall time (s) up to `step` over every session of a resumed run: each session's
    log restarts its clock, so a drop in `wall_s` starts a new segment."""
    offset, last = 0.0, 0.0
    for rec in log:
        wall = rec.get("wall_s")
        if wall is None:
            continue
        if wall < last:
            offset += last
        last = wall
        if rec.get("step") == step:
            return round(offset + wall, 1)
    return None


CT_SHAPE_NAME = "ct_nodule_shape"
CT_SHAPE_DESCRIPTION = (
    "Lung nodule outlines (P3 shape DCGAN, 64²): trained on real LIDC-IDRI/LUNA16 axial nodule masks "
    "(library series only, smooth-upsampled); samples are cleaned like every shape. Research use, not "
    "for clinical use."
)


def ship_ct_shape(args) -> int:
    """Copy the validation-selected shape checkpoint + card to `--out`, only when the shape
    benchmark (`--realism`: benchmarks/shape_realism.py's JSON on the HELD-OUT series) shows it
    closer to the real held-out outlines than the built-in lobulated blobs on both the mean W1
    and the two-sample AUC."""
    work = args.work / "ct-shape"
    bench = json.loads(Path(args.realism[0]).read_text())
    selection = json.loads((work / "selection" / "selection.json").read_text())
    res = bench["results"]
    gen_key = next(k for k in res if k.startswith("generator "))
    mine, lob, bank = res[gen_key], res["lobulated (built-in)"], res["bank (real, library series)"]
    source = Path(mine["checkpoint"])
    if Path(selection["selected"]).resolve() != source.resolve():
        print(json.dumps({"shipped": False, "reason": f"benchmarked {source}, selected {selection['selected']}"}))
        return 1
    beats = {"w1_sd_mean": mine["w1_sd_mean"] < lob["w1_sd_mean"], "auc": mine["auc"] < lob["auc"]}
    if not all(beats.values()):
        print(json.dumps({"shipped": False, "beats_lobulated": beats}), flush=True)
        return 1
    meta = json.loads(source.with_name(source.name + ".json").read_text())
    dataset = json.loads((work / "dataset" / "dataset.json").read_text())["build_summary"]
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines() if line.strip()]
    step_wall = cumulative_wall_s(log, int(meta["step"]))
    card = {
        "task": "lesion outlines for the shape picker's 'generator' source (P3 §III-A DCGAN), any modality; "
                "the engine scales a sample to the requested diameter in mm",
        "data": {
            "source": "node21_ct_nodules/node21_ct_axial.npz (NODE21 generation baseline nodule patches, from LUNA16 / "
                      "LIDC-IDRI): every axial mask component >= 5 mm of the five slices (-2..+2 mm) around each nodule",
            "licence": "LIDC-IDRI: CC BY 3.0; LUNA16: CC BY 4.0; NODE21 generation baseline repository: Apache-2.0",
            "attribution": "lesion_studio/resources/nodules/ATTRIBUTION.md", "citations": CITATIONS,
            "series_used": dataset["library_series"], "series_validation": dataset["val_series"],
            "series_held_out": dataset["heldout_series_excluded"], "outlines_used": dataset["cases"],
            "preprocessing": "each component cropped, smooth-upsampled (nodule_library.smooth_component: Gaussian "
                             "sigma 1 px, bicubic to 96 px, threshold 0.5), then P3 §IV-A: moment diameter scaled to "
                             "50 px on a 128² canvas, resized to 64²",
            "held_out": "every series in lesion_studio/resources/nodules/split.json is excluded (asserted)",
        },
        "training": {
            "steps": int(meta["step"]), "hardware": "CPU, 2 shared cores (x86_64), 1 torch thread, fp32",
            "wall_time_s": step_wall,
            "losses": "LSGAN (P3 Eq. 1-2), Adam 2e-4/2e-4, betas (0.5, 0.999), batch 32, flips",
            "selection": "the periodic checkpoint with the lowest mean W1 (in real-sd units) of solidity, "
                         "eccentricity, circularity and extent against the VALIDATION series' outlines "
                         "(benchmarks/shape_realism.py --select-on val); the held-out series are not used",
            "selection_rows": [{k: r[k] for k in ("checkpoint", "w1_sd_mean", "auc")} for r in selection["rows"]],
            "script": "scripts/train_default_models.py --task ct-shape --data ../shared/data --device cpu",
        },
        "shape_benchmark": {
            "what": "benchmarks/shape_realism.py on the held-out series' real outlines (cleaned): W1 per statistic in "
                    "real-sd units, and the AUC of a logistic regression telling the source from real on the four "
                    "statistics (0.5 = indistinguishable)",
            "commit": bench.get("commit"), "seed": bench.get("seed"),
            "heldout_real": res["heldout-real"],
            "generator": mine, "bank_real_library": bank, "lobulated_builtin": lob,
        },
        "known_failure_modes": [
            "outlines only: how dense or textured the lesion is comes from the texture model or real-nodule",
            f"the real bank (mask source 'bank') is closer to held-out real outlines (W1 {bank['w1_sd_mean']}, "
            f"AUC {bank['auc']}) than this generator (W1 {mine['w1_sd_mean']}, AUC {mine['auc']}): it stays the "
            "default mask source; the generator gives unseen outlines and replaces the geometric blobs",
            "LIDC masks are drawn at 1 mm: spiculation finer than a voxel is not in the data",
            "lung nodules only; kidney stones and other lesions have other outlines",
        ],
    }
    out_weights = write_shipped(source, args.out, CT_SHAPE_NAME, meta, CT_SHAPE_DESCRIPTION, card)
    print(json.dumps({"shipped": True, "weights": str(out_weights), "bytes": out_weights.stat().st_size}), flush=True)
    return 0


# -- tasks ----------------------------------------------------------------------------------
#: task -> (train, ship or None, default steps). `--ship` reads the task's benchmark JSON
#: (`--realism`): realism.py's for ct-removal and ct-inpaint, shape_realism.py's for ct-shape,
#: outpaint_realism.py's for ct-outpaint. The bundled CT generators were trained for 10,000 steps.
REAL_DATA_TASKS = {
    "ct-removal": (train_ct_removal, ship_ct_removal, 4000),
    "ct-inpaint": (train_ct_inpaint, lambda args: ship_ct_learned(args, "ct-inpaint"), 10000),
    "ct-outpaint": (train_ct_outpaint, lambda args: ship_ct_learned(args, "ct-outpaint"), 10000),
    "ct-shape": (train_ct_shape, ship_ct_shape, 8000),
    "ct-stylegan2": (train_ct_stylegan2, None, 20000),
    "stone-inpaint": (train_stone_inpaint, None, 4000),
    "cxr-removal": (train_cxr_removal, None, 3000),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(REAL_DATA_TASKS), default="ct-removal")
    parser.add_argument("--data", type=Path, required=True, help="the shared real-data folder (../shared/data)")
    parser.add_argument("--family", default=None, help="generator family (ct-removal: texture)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=0.0, help="stop (with a resumable checkpoint) after this long")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "default_models")
    parser.add_argument("--out", type=Path, default=ROOT / "lesion_studio" / "resources" / "models")
    parser.add_argument("--adversarial-weight", type=float, default=0.0,
                        help="stone-inpaint: add an adversarial term at this weight (its own run folder)")
    parser.add_argument("--allow-alternative", action="store_true",
                        help="ct-inpaint/ct-outpaint --ship: bundle a model that loses to its classical method as an "
                             "alternative even without a phantom row to compare with")
    parser.add_argument("--ship", action="store_true",
                        help="copy the selected checkpoint + card to --out (needs --realism)")
    parser.add_argument("--realism", type=Path, nargs="+", default=None,
                        help="the task's benchmark JSON for --ship: realism_results.json (ct-removal, ct-inpaint), "
                             "shape_realism.json (ct-shape) or outpaint_results.json (ct-outpaint); ct-inpaint and "
                             "ct-outpaint take several (one per benchmark seed) and compare mean AUCs")
    args = parser.parse_args()
    task = args.task
    if task == "ct-removal" and args.family not in (None, "texture"):
        parser.error("ct-removal trains the texture family")
    train_task, ship_task, default_steps = REAL_DATA_TASKS[task]
    args.steps = args.steps or default_steps
    if not args.ship:
        return train_task(args)
    if ship_task is None:
        parser.error(f"--task {task} has no --ship: it does not beat its classical baseline (docs/models.md)")
    if args.realism is None:
        parser.error("--ship needs --realism: the benchmark's JSON decides what ships (see the module docstring)")
    return ship_task(args)

if __name__ == "__main__":
    sys.exit(main())
