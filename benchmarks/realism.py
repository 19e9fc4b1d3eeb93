"""Realism of every synthesis family, side by side, on real held-out images the models never saw.

One run, one engine path (`load_synthesizer(...)` → `engine(image, request, ...)`, as the app):

1. hole filling / removal: elliptical holes in healthy lung, treated as an existing lesion and
   removed ("remove" mode); TELEA, Navier-Stokes, ring mean, texture-fill, auto-fill and the
   learned removal models given (CT, radiograph) on the same engine hole; masked PSNR, SSIM, MAE;
2. insertion: `real-nodule` and the learned CT inpainter (`ct_nodule_inpaint`, bundled) at the
   same placements and diameters; contrast, boundary-gradient and texture ratios, components,
   diameters — and the same statistics for the REAL held-out nodules for comparison;
3. real-vs-synthetic CNN (P2 §3.2): a small CNN, series-grouped 5-fold CV, AUC with a
   series-clustered bootstrap 95 % CI (0.5 = indistinguishable);
4. contact sheets (PNG) in --out.

Data (`--data`, default ../shared/data): CT nodules of the held-out series only
(`resources/nodules/split.json`) from node21_ct_nodules/node21_ct_axial.npz (centre slice);
the chest CR `RG1_UNCR.dcm` (no spacing) and the two NIH PNGs (0.286 mm/px).

    python benchmarks/realism.py [--data ../shared/data] [--out realism_out] [--quick] [--copy-to-docs]

Prints JSON lines (device, commit) and writes realism_results.json to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks._common import cpu_device, emit, git_commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEXTURE = ROOT / "lesion_studio" / "resources" / "models" / "demo_texture_inpaint"
#: The learned CT lung removal model (texture family, objective "remove", trained on the LIBRARY
#: series only by scripts/train_default_models.py); `--ct-removal-checkpoint` overrides it.
LEARNED_CT_REMOVAL = ROOT / "lesion_studio" / "resources" / "models" / "ct_lung_removal"
#: The learned CT nodule inpainter (texture family, objective "inpaint", library series only);
#: `--ct-inpaint-checkpoint` overrides it. CT only, like the removal model.
LEARNED_CT_INPAINT = ROOT / "lesion_studio" / "resources" / "models" / "ct_nodule_inpaint"
CT_WINDOW = (-1350.0, 150.0)  # lung window (level −600, width 1500)
LUNG_HU = -400.0
NIH_SPACING = (0.286, 0.286)
RG1_ASSUMED_MM_PER_PX = 400.0 / 1955.0  # the engine's 400 mm field assumption for RG1 (no spacing)
#: Hand-set lung-field boxes (row0, row1, col0, col1) per radiograph, read off the images; a
#: centre is accepted only where the local mean (15 px box) is at or below the box's 60th
#: percentile (aerated lung is darker), so ribs-only and hilar spots are mostly avoided.
LUNG_BOXES = {
    "RG1_UNCR.dcm": [(380, 1000, 300, 700), (380, 1000, 1150, 1500)],
    "00000001_000.png": [(110, 330, 110, 220), (110, 250, 300, 410)],
    "00027426_000.png": [(100, 330, 120, 230), (100, 300, 310, 410)],
}
FILL_METHODS = ("telea", "navier-stokes", "ring-mean", "texture-fill", "auto-fill", "demo-texture", "learned-ct-removal",
                "learned-rg-removal")
INSERT_METHODS = ("real-nodule", "demo-texture", "learned-ct-inpaint")
CT_ONLY_METHODS = ("learned-ct-removal", "learned-ct-inpaint")


# --------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)


def ellipse_mask(shape, centre, axes, angle_rad) -> np.ndarray:
    rr, cc = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    dy, dx = rr - centre[0], cc - centre[1]
    u = dx * math.cos(angle_rad) + dy * math.sin(angle_rad)
    v = -dx * math.sin(angle_rad) + dy * math.cos(angle_rad)
    return (u / (axes[1] / 2.0)) ** 2 + (v / (axes[0] / 2.0)) ** 2 <= 1.0


def ring(mask: np.ndarray, gap: float, width: float) -> np.ndarray:
    d = ndimage.distance_transform_edt(~mask)
    return (d > gap) & (d <= gap + width)


def grad_mag(img: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(img.astype(np.float64))
    return np.hypot(gy, gx)


def lesion_stats(img: np.ndarray, mask: np.ndarray, spacing=None) -> dict:
    """Contrast, boundary-gradient ratio, fine-texture ratio, components and diameters of one
    lesion mask in one image (definitions in the docs table)."""
    from lesion_studio.core.geometry.size_modulation import moment_diameter

    img = img.astype(np.float64)
    mask = mask.astype(bool)
    outer3 = ring(mask, 0, 3)  # 3-px ring just outside
    contrast = float(img[mask].mean() - img[outer3].mean())
    inner_edge = mask & ~ndimage.binary_erosion(mask)
    outer_edge = ndimage.binary_dilation(mask) & ~mask
    boundary = inner_edge | outer_edge
    surround = ring(mask, 3, 5)  # 3–8 px outside: the surrounding tissue
    g = grad_mag(img)
    bgr = float(g[boundary].mean() / max(g[surround].mean(), 1e-9))
    hp = img - ndimage.gaussian_filter(img, 1.0)
    core = ndimage.binary_erosion(mask)
    core = core if core.sum() >= 4 else mask
    tex = float(hp[core].std() / max(hp[surround].std(), 1e-9))
    _, n_comp = ndimage.label(mask, structure=np.ones((3, 3)))
    sy, sx = spacing if spacing is not None else (1.0, 1.0)
    area_eq = 2.0 * math.sqrt(mask.sum() * sy * sx / math.pi)
    return {"contrast": contrast, "denser": contrast > 0, "boundary_grad_ratio": bgr, "texture_ratio": tex,
            "components": int(n_comp), "d_moment": moment_diameter(mask, spacing), "d_area_eq": area_eq}


def summarize(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "p5": float(np.percentile(v, 5)), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def masked_metrics(ref: np.ndarray, out: np.ndarray, hole: np.ndarray, data_range: float) -> dict:
    from skimage.metrics import structural_similarity

    err = (out[hole].astype(np.float64) - ref[hole].astype(np.float64))
    mse = float(np.mean(err**2))
    psnr = float(10 * math.log10(data_range**2 / mse)) if mse > 0 else float("inf")
    rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    pad = 3
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, hole.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, hole.shape[1])
    a, b = ref[r0:r1, c0:c1].astype(np.float64), out[r0:r1, c0:c1].astype(np.float64)
    win = min(7, (min(a.shape) // 2) * 2 - 1)
    ssim = float(structural_similarity(a, b, data_range=data_range, win_size=win))
    return {"psnr": psnr, "ssim": ssim, "mae": float(np.mean(np.abs(err)))}


# ------------------------------------------------------------------------------------ data
def load_ct(data: Path) -> dict:
    from lesion_studio.core.classical.nodule_library import heldout_series_uids

    held = heldout_series_uids()
    folder = data / "node21_ct_nodules"
    with open(folder / "nodules.csv") as fh:
        rows = list(csv.DictReader(fh))
    by_name = {r["name"]: r for r in rows}
    npz = np.load(folder / "node21_ct_axial.npz")
    names = npz["names"]
    series = np.array([by_name[str(n)]["seriesuid"] for n in names])
    padded = np.array([int(by_name[str(n)]["padded"]) for n in names], bool)
    keep = np.flatnonzero(np.isin(series, list(held)) & ~padded)
    centre = int(np.flatnonzero(npz["slice_offsets"] == 0)[0])
    return {
        "images": npz["images"][keep, centre].astype(np.float32),
        "masks": npz["masks"][keep, centre] > 0,
        "diameter_mm": npz["diameter_mm"][keep].astype(np.float64),
        "series": series[keep],
        "n_heldout_series": len(set(series[keep])),
        "n_excluded_padded": int((np.isin(series, list(held)) & padded).sum()),
    }


def load_radiographs(data: Path) -> list[dict]:
    from lesion_studio.core.imageio import load_image
    from lesion_studio.core.sample_data import sample_file

    out = []
    rg1 = load_image(sample_file("RG1_UNCR.dcm"))
    out.append({"name": "RG1_UNCR.dcm", "pixels": rg1.pixels.astype(np.float32), "spacing": None,
                "modality": "CR", "mm_per_px": RG1_ASSUMED_MM_PER_PX})
    for f in ("00000001_000.png", "00027426_000.png"):
        im = load_image(data / "cxr_nih" / f)
        out.append({"name": f, "pixels": im.pixels.astype(np.float32), "spacing": NIH_SPACING,
                    "modality": "DX", "mm_per_px": NIH_SPACING[0]})
    return out


def radiograph_centres(rg: dict, n: int, radius_px: np.ndarray, rng) -> list[tuple[float, float]]:
    """`n` centres inside the hand-set lung boxes, on darker-than-typical (aerated) spots."""
    pix = rg["pixels"]
    local = ndimage.uniform_filter(pix, 15)
    centres = []
    boxes = LUNG_BOXES[rg["name"]]
    thresholds = [np.percentile(local[r0:r1, c0:c1], 60) for r0, r1, c0, c1 in boxes]
    tries = 0
    while len(centres) < n and tries < 50 * n:
        tries += 1
        k = int(rng.integers(len(boxes)))
        r0, r1, c0, c1 = boxes[k]
        r = int(rng.integers(r0, r1))
        c = int(rng.integers(c0, c1))
        if local[r, c] > thresholds[k]:
            continue
        if any(math.hypot(r - a, c - b) < 8 for a, b in centres):  # each runs on the original image
            continue
        centres.append((float(r), float(c)))
    return centres


# ------------------------------------------------------------------------------ engines
def load_engines(ct_removal_checkpoint: Path | None = LEARNED_CT_REMOVAL,
                 ct_inpaint_checkpoint: Path | None = LEARNED_CT_INPAINT,
                 rg_removal_checkpoint: Path | None = None):
    from lesion_studio.models.inference import load_synthesizer

    engines = {name: load_synthesizer(name) for name in ("telea", "navier-stokes", "texture-fill", "auto-fill", "real-nodule")}
    if Path(str(DEMO_TEXTURE) + ".json").is_file():  # the phantom demo model, gone since ct_nodule_inpaint replaced it
        engines["demo-texture"] = load_synthesizer(DEMO_TEXTURE)
        # the same demo model as a fill: it was trained to inpaint phantom lesions, not to remove
        fill = load_synthesizer(DEMO_TEXTURE)
        fill.backend.modes = ("inpaint", "remove")
        engines["demo-texture-fill"] = fill
    # CT only (trained on HU lung slices): run on CT holes, left out (n = 0) on radiographs
    if ct_removal_checkpoint is not None and Path(str(ct_removal_checkpoint) + ".json").is_file():
        engines["learned-ct-removal"] = load_synthesizer(ct_removal_checkpoint)
    if ct_inpaint_checkpoint is not None and Path(str(ct_inpaint_checkpoint) + ".json").is_file():
        engines["learned-ct-inpaint"] = load_synthesizer(ct_inpaint_checkpoint)
    # radiographs only, and only on the images it did not train on (`RG_REMOVAL_TRAINED_ON`)
    if rg_removal_checkpoint is not None:
        engines["learned-rg-removal"] = load_synthesizer(rg_removal_checkpoint)
    return engines


#: The radiograph removal model (scripts/train_default_models.py --task cxr-removal) trains on
#: this image: its row is left empty there.
RG_REMOVAL_TRAINED_ON = "00000001_000.png"


def run_removal(engines, image, hole, spacing, modality, image_name=""):
    """Every fill method on the same engine hole; returns {method: image}, footprint, or
    (None, None) when the learned radiograph model refuses the hole (it is then left out for all)."""
    from lesion_studio.core.classical.fill import fill_hole
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

    rows, cols = np.nonzero(hole)
    req = SynthesisRequest(mode="remove", centre_rc=(float(rows.mean()), float(cols.mean())),
                           mask_source=MaskSource("existing"))
    outs = {}
    footprint = None
    for method, key in (("telea", "telea"), ("navier-stokes", "navier-stokes"), ("texture-fill", "texture-fill"),
                        ("auto-fill", "auto-fill"), ("demo-texture", "demo-texture-fill"),
                        ("learned-ct-removal", "learned-ct-removal"), ("learned-rg-removal", "learned-rg-removal")):
        if key not in engines or (key == "learned-ct-removal" and modality != "CT") or (
                key == "learned-rg-removal" and (modality == "CT" or image_name == RG_REMOVAL_TRAINED_ON)):
            outs[method] = None
            continue
        try:
            res = engines[key](image, req, lesion_mask=hole, spacing_mm=spacing, modality=modality)
        except ConfigError:
            outs[method] = None
            if key == "learned-rg-removal":  # too large for its input: the hole is left out for every method
                return None, None
            continue
        fp = res.plan.footprint_image()
        if footprint is None:
            footprint = fp
        assert np.array_equal(fp, footprint), "engines planned different holes"
        outs[method] = res.image
    outs["ring-mean"] = fill_hole(image, footprint, method="ring-mean")
    return outs, footprint


def run_insertion(engines, method, image, centre, diameter, unit, seed, bank, spacing, modality):
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

    kw = {"diameter_mm": diameter} if unit == "mm" else {"diameter_px": diameter}
    req = SynthesisRequest(mode="inpaint", centre_rc=centre, mask_source=MaskSource("bank"), seed=seed, **kw)
    try:
        res = engines[method](image, req, bank=bank, spacing_mm=spacing, modality=modality)
    except ConfigError as exc:
        return None, str(exc)
    return res, None


# ------------------------------------------------------------------------------- task 1
def task_removal(engines, ct, rgs, n_ct, n_rg, rng, examples):
    data_ranges = {}
    results = {"ct": {m: [] for m in FILL_METHODS}}
    from lesion_studio.core.intensity import robust_range

    # CT: holes in lung, away from the nodule
    order = rng.permutation(len(ct["images"]))
    done = 0
    for i in order:
        if done >= n_ct:
            break
        img, nod = ct["images"][i], ct["masks"][i]
        lung = ndimage.binary_opening(img < LUNG_HU, iterations=1)
        lung &= ~ndimage.binary_dilation(nod, iterations=5)
        d_axis = rng.uniform(4, 16, size=2)
        angle = rng.uniform(0, math.pi)
        need = max(d_axis) / 2 + 3  # hole + the engine's 2-px removal margin + 1
        dist = ndimage.distance_transform_edt(np.pad(lung, 1))[1:-1, 1:-1]
        ok = np.argwhere(dist >= need)
        if len(ok) == 0:
            continue
        r, c = ok[rng.integers(len(ok))]
        hole = ellipse_mask(img.shape, (r, c), d_axis, angle)
        outs, fp = run_removal(engines, img, hole, (1.0, 1.0), "CT")
        lo, hi = robust_range(img)
        for m in FILL_METHODS:
            if outs.get(m) is not None:
                results["ct"][m].append(masked_metrics(img, outs[m], fp, hi - lo))
        if len(examples["removal"]) < 4:
            examples["removal"].append(("CT", img, fp, outs, CT_WINDOW))
        if len(examples.setdefault("removal_ct", [])) < 12:
            examples["removal_ct"].append((img, fp, outs))
        done += 1
    data_ranges["ct"] = "per-patch robust range (0.5–99.5 %) of the 50 mm centre slice, HU"
    # radiographs
    refused: dict[str, int] = {}  # holes the learned radiograph model refused (left out for every method)
    for rg in rgs:
        key = rg["name"]
        results[key] = {m: [] for m in FILL_METHODS}
        axes = rng.uniform(10, 40, size=(n_rg, 2))
        centres = radiograph_centres(rg, n_rg, axes.max(1) / 2 + 3, rng)
        lo, hi = robust_range(rg["pixels"])
        for (r, c), ax in zip(centres, axes):
            box = 40
            r0, c0 = int(r) - box, int(c) - box
            hole = np.zeros(rg["pixels"].shape, bool)
            hole[r0 : r0 + 2 * box, c0 : c0 + 2 * box] = ellipse_mask((2 * box, 2 * box), (box, box), ax, rng.uniform(0, math.pi))
            outs, fp = run_removal(engines, rg["pixels"], hole, rg["spacing"], rg["modality"], key)
            if outs is None:
                refused[key] = refused.get(key, 0) + 1
                continue
            for m in FILL_METHODS:
                if outs.get(m) is not None:
                    results[key][m].append(masked_metrics(rg["pixels"], outs[m], fp, hi - lo))
            if outs.get("learned-rg-removal") is not None and len(examples.setdefault("removal_rg", [])) < 12 \
                    and sum(1 for e in examples["removal_rg"] if e[4] == key) < 6:
                w = (float(np.percentile(rg["pixels"], 0.5)), float(np.percentile(rg["pixels"], 99.5)))
                examples["removal_rg"].append((rg["pixels"], fp, outs, w, key))
            if len([e for e in examples["removal"] if e[0] == key]) < 1:
                w = (float(np.percentile(rg["pixels"], 0.5)), float(np.percentile(rg["pixels"], 99.5)))
                examples["removal"].append((key, rg["pixels"], fp, outs, w))
        data_ranges[key] = f"whole-image robust range (0.5–99.5 %) = {hi - lo:.0f} image units" + (
            f"; {refused[key]} hole(s) too large for learned-rg-removal left out for every method" if refused.get(key) else "")
    table = {}
    for key, per in results.items():
        table[key] = {}
        for m, recs in per.items():
            table[key][m] = {k: summarize([r[k] for r in recs]) for k in ("psnr", "ssim", "mae")}
            emit({"benchmark": "realism.removal", "set": key, "method": m, "device": cpu_device(),
                  "data_range": data_ranges[key],
                  **{f"{k}_{s}": round(table[key][m][k].get(s, float("nan")), 4)
                     for k in ("psnr", "ssim", "mae") for s in ("mean", "sd")},
                  "n": table[key][m]["psnr"]["n"]})
    return table, data_ranges


# ------------------------------------------------------------------------------- task 2
STAT_KEYS = ("contrast", "boundary_grad_ratio", "texture_ratio")


def summarize_stats(recs: list[dict], requested: list[float] | None = None) -> dict:
    out = {k: summarize([r[k] for r in recs]) for k in STAT_KEYS}
    out["n"] = len(recs)
    out["denser_fraction"] = float(np.mean([r["denser"] for r in recs])) if recs else float("nan")
    out["one_component_fraction"] = float(np.mean([r["components"] == 1 for r in recs])) if recs else float("nan")
    if requested is not None and recs:
        req = np.asarray(requested)
        for k in ("d_moment", "d_area_eq"):
            rel = (np.asarray([r[k] for r in recs]) - req) / req
            out[f"rel_err_{k}"] = summarize(rel)
            out[f"within10_{k}"] = float(np.mean(np.abs(rel) <= 0.10))
        out["requested"] = summarize(req)
    return out


def task_insertion(engines, ct, rgs, n_ct, n_rg, rng, examples):
    tables = {}
    # real held-out nodules in their own patches
    real = [lesion_stats(img, m, (1.0, 1.0)) for img, m in zip(ct["images"], ct["masks"]) if m.sum() >= 4]
    tables["ct_real"] = summarize_stats(real)
    rn_bank_ct = engines["real-nodule"].own_bank("ct")
    pool = ct["diameter_mm"][(ct["diameter_mm"] >= 5) & (ct["diameter_mm"] <= 20)]
    recs = {m: [] for m in INSERT_METHODS}
    reqs = {m: [] for m in INSERT_METHODS}
    fails = {m: [] for m in INSERT_METHODS}
    cnn = {"real": [], "real-nodule@site": []} | {m: [] for m in INSERT_METHODS}
    order = rng.permutation(len(ct["images"]))[:n_ct]
    n_place = 0
    for i in order:
        img, nod = ct["images"][i], ct["masks"][i]
        cnn["real"].append((*crop32_pair(img, nod, centroid(nod), rng, jitter=6), ct["series"][i]))
        d = float(rng.choice(pool))
        lung = ndimage.binary_opening(img < LUNG_HU, iterations=1)
        away = ndimage.distance_transform_edt(~nod) >= d / 2 + 4
        inner = np.zeros_like(lung)
        m = int(math.ceil(d / 2)) + 2
        inner[m:-m, m:-m] = True
        dist = ndimage.distance_transform_edt(np.pad(lung, 1))[1:-1, 1:-1]
        ok = np.argwhere((dist >= max(d / 4, 2)) & away & inner)
        if len(ok) == 0:
            d = max(5.0, d / 2)  # a crowded patch: a smaller nodule
            away = ndimage.distance_transform_edt(~nod) >= d / 2 + 4
            ok = np.argwhere((dist >= 2) & away & inner)
            if len(ok) == 0:
                continue
        r, c = ok[rng.integers(len(ok))]
        seed = int(rng.integers(0, 2**31 - 1))
        n_place += 1
        ex = {"real": crop32(img, centroid(nod), None)}
        for method in INSERT_METHODS:
            if method not in engines:
                continue
            res, err = run_insertion(engines, method, img, (float(r), float(c)), d, "mm", seed, rn_bank_ct, (1.0, 1.0), "CT")
            if res is None:
                fails[method].append(err)
                continue
            fp = res.plan.footprint_image()
            recs[method].append(lesion_stats(res.image, fp, (1.0, 1.0)))
            reqs[method].append(d)
            cnn[method].append((*crop32_pair(res.image, fp, centroid(fp), rng, jitter=6), ct["series"][i]))
            ex[method] = crop32(res.image, centroid(fp), None)
        # matched site: the patch's own nodule removed (auto-fill) and a library nodule of the
        # same LIDC diameter inserted at its centroid — same anatomy, same place in the crop
        site = matched_site_insertion(engines, img, nod, float(np.clip(ct["diameter_mm"][i], 4.0, 30.0)),
                                      seed, rn_bank_ct)
        if site is not None:
            cnn["real-nodule@site"].append((*crop32_pair(site[0], site[1], centroid(site[1]), rng, jitter=6),
                                            ct["series"][i]))
            ex["real-nodule@site"] = crop32(site[0], centroid(site[1]), None)
        if len(examples["ct"]) < 10:
            examples["ct"].append(ex)
    for method in (m for m in INSERT_METHODS if m in engines):
        tables[f"ct_{method}"] = summarize_stats(recs[method], reqs[method])
        tables[f"ct_{method}"]["not_served"] = len(fails[method])
        tables[f"ct_{method}"]["placements"] = n_place
    # radiographs: no annotated real radiograph nodules exist in the data (no reference row)
    for rg in rgs:
        key = rg["name"]
        mm = rng.uniform(6, 20, size=n_rg)
        rad_px = mm / rg["mm_per_px"] / 2
        centres = radiograph_centres(rg, n_rg, rad_px, rng)
        kind_bank = engines["real-nodule"].own_bank("radiograph")
        rr = {m: [] for m in INSERT_METHODS}
        rq = {m: [] for m in INSERT_METHODS}
        nf = {m: 0 for m in INSERT_METHODS}
        for (r, c), d_mm in zip(centres, mm):
            seed = int(rng.integers(0, 2**31 - 1))
            if rg["spacing"] is None:
                diameter, unit, req_unit = d_mm / rg["mm_per_px"], "px", d_mm / rg["mm_per_px"]
            else:
                diameter, unit, req_unit = d_mm, "mm", d_mm
            shown = {}
            for method in INSERT_METHODS:
                if method not in engines or method in CT_ONLY_METHODS:
                    continue
                res, err = run_insertion(engines, method, rg["pixels"], (r, c), diameter, unit, seed, kind_bank,
                                         rg["spacing"], rg["modality"])
                if res is None:
                    nf[method] += 1
                    continue
                fp = res.plan.footprint_image()
                rr[method].append(lesion_stats_local(res.image, fp, rg["spacing"]))
                rq[method].append(req_unit)
                shown[method] = (res.image, fp)
            if len([e for e in examples["radiograph"] if e["name"] == key]) < 3 and "real-nodule" in shown:
                fp = shown["real-nodule"][1]
                cen = centroid(fp)
                half = int(max(20, 1.3 * d_mm / rg["mm_per_px"]))  # about 2.6 diameters across
                ex = {"name": key, "orig": crop_sq(rg["pixels"], cen, half), "mm": float(d_mm)}
                for method in INSERT_METHODS:
                    if method in shown:
                        ex[method] = crop_sq(shown[method][0], cen, half)
                examples["radiograph"].append(ex)
        for method in (m for m in INSERT_METHODS if m in engines and m not in CT_ONLY_METHODS):
            t = summarize_stats(rr[method], rq[method])
            t["not_served"] = nf[method]
            t["placements"] = len(centres)
            t["diameter_unit"] = "px" if rg["spacing"] is None else "mm"
            tables[f"{key}_{method}"] = t
    for key, t in tables.items():
        emit({"benchmark": "realism.insertion", "set": key, "device": cpu_device(), "n": t["n"],
              "denser_fraction": t.get("denser_fraction"), "one_component_fraction": t.get("one_component_fraction"),
              **{f"{k}_mean": round(t[k].get("mean", float("nan")), 4) for k in STAT_KEYS},
              **{f"{k}_p5_p95": [round(t[k].get("p5", float("nan")), 3), round(t[k].get("p95", float("nan")), 3)]
                 for k in STAT_KEYS},
              **({"rel_err_area_eq_mean": round(t["rel_err_d_area_eq"]["mean"], 4),
                  "within10_area_eq": t["within10_d_area_eq"], "rel_err_moment_mean": round(t["rel_err_d_moment"]["mean"], 4),
                  "not_served": t.get("not_served")} if "rel_err_d_area_eq" in t else {})})
    return tables, cnn


def matched_site_insertion(engines, img, nodule, diameter_mm, seed, bank):
    """Remove the real nodule (the default removal) and insert a library nodule of the same
    diameter at its centroid: `(image, new footprint)` or None when a step is refused."""
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

    centre = centroid(nodule)
    remove = SynthesisRequest(mode="remove", centre_rc=centre, mask_source=MaskSource("existing"))
    try:
        removed = engines["auto-fill"](img, remove, lesion_mask=nodule, spacing_mm=(1.0, 1.0), modality="CT")
    except ConfigError:
        return None
    res, _ = run_insertion(engines, "real-nodule", removed.image, centre, diameter_mm, "mm", seed, bank,
                           (1.0, 1.0), "CT")
    if res is None:
        return None
    return res.image, res.plan.footprint_image()


def lesion_stats_local(img, mask, spacing):
    """`lesion_stats` on a crop around the mask (large radiographs)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    pad = 20
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, mask.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, mask.shape[1])
    return lesion_stats(img[r0:r1, c0:c1], mask[r0:r1, c0:c1], spacing)


def centroid(mask):
    r, c = np.nonzero(mask)
    return float(r.mean()), float(c.mean())


def crop32(img, centre, rng, jitter=0, side=32):
    """A side×side crop around `centre` (± jitter px), shifted to stay inside the image."""
    r, c = centre
    if rng is not None and jitter:
        r += rng.integers(-jitter, jitter + 1)
        c += rng.integers(-jitter, jitter + 1)
    r0 = int(np.clip(round(r) - side // 2, 0, img.shape[0] - side))
    c0 = int(np.clip(round(c) - side // 2, 0, img.shape[1] - side))
    return img[r0 : r0 + side, c0 : c0 + side].astype(np.float32)


def crop32_pair(img, mask, centre, rng, jitter=0, side=32):
    """`crop32` of an image and its lesion mask with the same window."""
    stack = np.stack([img.astype(np.float32), mask.astype(np.float32)])
    r, c = centre
    if rng is not None and jitter:
        r += rng.integers(-jitter, jitter + 1)
        c += rng.integers(-jitter, jitter + 1)
    r0 = int(np.clip(round(r) - side // 2, 0, img.shape[0] - side))
    c0 = int(np.clip(round(c) - side // 2, 0, img.shape[1] - side))
    crop = stack[:, r0 : r0 + side, c0 : c0 + side]
    return crop[0], crop[1] > 0


def crop_sq(img, centre, half):
    r, c = int(round(centre[0])), int(round(centre[1]))
    r0, c0 = max(r - half, 0), max(c - half, 0)
    return img[r0 : r + half, c0 : c + half].astype(np.float32)


# ------------------------------------------------------------------------------- task 3
def auc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def task_cnn(cnn, method, rng, epochs, seed, context_only=False, value_range=(-1100.0, 500.0), blank_value=-800.0):
    """Series-grouped 5-fold CV of a small CNN, real (0) vs `method` insertions (1).

    `context_only`: a control — every lesion (mask dilated by 3 px) is blanked to `blank_value`
    (−800 HU) in both classes, so the CNN sees only the surroundings, crop placement and lesion
    outline; its AUC is what the study design alone gives away. `value_range`: the classifier's
    input range (HU by default; 0-255 for 8-bit images)."""
    from lesion_studio.models.realism_classifier import train_realism_classifier

    real, fake = cnn["real"], cnn[method]
    x = np.stack([p for p, _, _ in real] + [p for p, _, _ in fake])
    y = np.array([0] * len(real) + [1] * len(fake), np.float32)
    groups = np.array([g for _, _, g in real] + [g for _, _, g in fake])
    if context_only:
        masks = np.stack([m for _, m, _ in real] + [m for _, m, _ in fake])
        blank = np.stack([ndimage.binary_dilation(m, iterations=3) for m in masks])
        x = np.where(blank, np.float32(blank_value), x)
    uniq = np.array(sorted(set(groups)))
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % 5))
    folds = np.array([fold_of[g] for g in groups])
    scores = np.zeros(len(y))
    t0 = time.perf_counter()
    for k in range(5):  # clipped to value_range inside the classifier
        tr, te = folds != k, folds == k
        clf = train_realism_classifier(x[tr], y[tr], epochs=epochs, seed=seed + k, value_range=tuple(value_range))
        scores[te] = clf.logits(x[te])
    point = auc(y, scores)
    boots = []
    idx_by_group = {gname: np.flatnonzero(groups == gname) for gname in uniq}
    for _ in range(1000):
        pick = rng.choice(uniq, size=len(uniq), replace=True)
        idx = np.concatenate([idx_by_group[gname] for gname in pick])
        if len(set(y[idx])) < 2:
            continue
        boots.append(auc(y[idx], scores[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    out = {"auc": point, "ci95": [float(lo), float(hi)], "n_real": len(real), "n_synthetic": len(fake),
           "n_series": int(len(uniq)), "epochs": epochs, "train_s": round(time.perf_counter() - t0, 1)}
    out["context_only_control"] = bool(context_only)
    emit({"benchmark": "realism.real_vs_synthetic_cnn", "method": method, "device": cpu_device(), **out})
    return out


# ------------------------------------------------------------------------------ sheets
def _save(fig, path: Path) -> Path:
    """Lay out, write (110 dpi) and close one contact sheet."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _removal_closeup(plt, ex, methods, labels, *, half: int, label_size: int, title: str):
    """Rows original / hole / each method, one column per `(image, footprint, outs, (lo, hi))`,
    2·`half` px crops around the hole."""
    rows = ("original", "hole", *methods)
    fig, axes = plt.subplots(len(rows), len(ex), figsize=(1.25 * len(ex), 1.35 * len(rows)))
    axes = np.atleast_2d(axes).reshape(len(rows), len(ex))
    for j, (img, fp, outs, (lo, hi)) in enumerate(ex):
        cen = centroid(fp)
        holed = img.copy()
        holed[fp] = lo
        views = {"original": img, "hole": holed, **{m: outs.get(m) for m in methods}}
        for i, key in enumerate(rows):
            a = axes[i, j]
            if views[key] is not None:
                a.imshow(crop_sq(views[key], cen, half), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
    for i, lab in enumerate(("original", "hole (+2 px margin)", *labels)):
        axes[i, 0].set_ylabel(lab, fontsize=label_size)
    fig.suptitle(title, fontsize=8)
    return fig


def sheets(examples, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    # CT
    rows = [("real", "real held-out nodule"), ("real-nodule@site", "real-nodule at its site (real one removed first)"),
            ("real-nodule", "real-nodule insertion in open lung")]
    for key, label in (("demo-texture", "demo texture insertion in open lung"),
                       ("learned-ct-inpaint", "learned CT inpainter (ct_nodule_inpaint) in open lung")):
        if any(key in e for e in examples["ct"]):  # methods that ran
            rows.append((key, label))
    ex = [e for e in examples["ct"] if all(k in e for k, _ in rows)][:8]
    if ex:
        fig, axes = plt.subplots(len(rows), len(ex), figsize=(1.6 * len(ex), 1.72 * len(rows) + 0.05))
        axes = np.atleast_2d(axes).reshape(len(rows), len(ex))
        for j, e in enumerate(ex):
            for i, (key, _) in enumerate(rows):
                axes[i, j].imshow(e[key], cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], interpolation="nearest")
                axes[i, j].axis("off")
        for i, (_, lab) in enumerate(rows):
            axes[i, 0].set_title(lab, fontsize=8, loc="left")
        fig.suptitle(f"CT, 32 mm crops, lung window −1350/150 HU (row 1: held-out real; rows 2-{len(rows)}: inserted)",
                     fontsize=8)
        paths["ct"] = _save(fig, out / "realism_ct.png")
    # radiographs
    ex = examples["radiograph"]
    if ex:
        keys = ("orig", "real-nodule") + (("demo-texture",) if any("demo-texture" in e for e in ex) else ())
        fig, axes = plt.subplots(len(keys) + 1, len(ex), figsize=(1.9 * len(ex), 2.0 * (len(keys) + 1)))
        axes = np.atleast_2d(axes).reshape(len(keys) + 1, len(ex))
        for j, e in enumerate(ex):
            lo, hi = np.percentile(e["orig"], [1, 99])
            for i, key in enumerate(keys):
                a = axes[i, j]
                if key in e:
                    a.imshow(e[key], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                else:
                    a.text(0.5, 0.5, "not served\n(too large for\n64 px model)", ha="center", va="center", fontsize=7)
                a.set_xticks([])
                a.set_yticks([])
            diff = e["real-nodule"] - e["orig"]
            axes[-1, j].imshow(diff, cmap="magma", vmin=0, vmax=max(float(diff.max()), 1e-6), interpolation="nearest")
            axes[-1, j].set_xticks([])
            axes[-1, j].set_yticks([])
            axes[0, j].set_title(f"{e['name'][:12]}\n{e['mm']:.0f} mm", fontsize=7)
        labels = {"orig": "original", "real-nodule": "real-nodule", "demo-texture": "demo texture"}
        for i, lab in enumerate([labels[k] for k in keys] + ["real-nodule − original"]):
            axes[i, 0].set_ylabel(lab, fontsize=8)
        paths["radiograph"] = _save(fig, out / "realism_radiograph.png")
    # removal
    ex = examples["removal"]
    if ex:
        cols = ("original", "hole", "telea", "navier-stokes", "ring-mean", "texture-fill", "auto-fill") + tuple(
            m for m in ("demo-texture", "learned-ct-removal", "learned-rg-removal")
            if any(e[3].get(m) is not None for e in ex))
        fig, axes = plt.subplots(len(ex), len(cols), figsize=(1.7 * len(cols), 1.8 * len(ex)))
        axes = np.atleast_2d(axes)
        for i, (name, img, fp, outs, win) in enumerate(ex):
            cen = centroid(fp)
            half = int(max(16, 1.5 * max(np.ptp(np.nonzero(fp)[0]), np.ptp(np.nonzero(fp)[1])) + 8))
            orig = crop_sq(img, cen, half)
            lo, hi = (win if name == "CT" else np.percentile(orig, [1, 99]))
            holed = img.copy()
            holed[fp] = lo
            views = [orig, crop_sq(holed, cen, half)] + [
                crop_sq(outs[m], cen, half) if outs.get(m) is not None else None for m in cols[2:]]
            for j, v in enumerate(views):
                a = axes[i, j]
                if v is not None:
                    a.imshow(v, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                if i == 0:
                    a.set_title({"demo-texture": "demo-texture (learned)",
                                 "learned-ct-removal": "learned CT removal",
                                 "learned-rg-removal": "learned CXR removal"}.get(cols[j], cols[j]), fontsize=7)
            axes[i, 0].set_ylabel(name[:14], fontsize=7)
        paths["removal"] = _save(fig, out / "realism_removal.png")
    # CT removal close-up: 12 held-out holes, original / hole / TELEA / NS / learned
    ex = examples.get("removal_ct", [])
    if ex and any(outs.get("learned-ct-removal") is not None for _, _, outs in ex):
        fig = _removal_closeup(
            plt, [(img, fp, outs, CT_WINDOW) for img, fp, outs in ex], ("telea", "navier-stokes", "learned-ct-removal"),
            ("TELEA", "Navier-Stokes", "learned"), half=14, label_size=7,
            title="CT removal on held-out series: 28 mm crops at 1 mm, lung window −1350/150 HU")
        paths["removal_ct"] = _save(fig, out / "realism_removal_ct.png")
    # radiograph removal close-up: holes of the images the learned CXR model never saw
    ex = examples.get("removal_rg", [])
    if ex:
        fig = _removal_closeup(
            plt, [(img, fp, outs, window) for img, fp, outs, window, _ in ex],
            ("texture-fill", "navier-stokes", "learned-rg-removal"), ("texture-fill (auto-fill)", "Navier-Stokes",
                                                                       "learned CXR"), half=32, label_size=6,
            title="Radiograph removal on RG1 and NIH 00027426 (never trained on): 64 px crops")
        paths["removal_rg"] = _save(fig, out / "realism_removal_rg.png")
    return paths


# -------------------------------------------------------------------------------- main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=Path("realism_out"))
    p.add_argument("--quick", action="store_true", help="small N for a smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copy-to-docs", action="store_true", help="copy the sheets to docs/realism_*.png")
    p.add_argument("--ct-removal-checkpoint", type=Path, default=LEARNED_CT_REMOVAL,
                   help="learned CT removal checkpoint stem (method learned-ct-removal; skipped when absent)")
    p.add_argument("--ct-inpaint-checkpoint", type=Path, default=LEARNED_CT_INPAINT,
                   help="learned CT nodule inpainting checkpoint stem (method learned-ct-inpaint; skipped when absent)")
    p.add_argument("--rg-removal-checkpoint", type=Path, default=None,
                   help="learned radiograph removal checkpoint stem (method learned-rg-removal, radiographs other "
                        f"than {RG_REMOVAL_TRAINED_ON})")
    p.add_argument("--removal-only", action="store_true", help="run only task 1 (hole filling / removal)")
    p.add_argument("--with-radiographs", action="store_true",
                   help="with --removal-only: fill the radiographs' holes too (CT holes are the same either way)")
    args = p.parse_args()
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    n_fill_ct, n_fill_rg, n_ins_ct, n_ins_rg, epochs = (12, 4, 30, 4, 3) if args.quick else (150, 30, 10**6, 25, 25)
    t0 = time.perf_counter()
    ct = load_ct(args.data)
    rgs = [] if args.removal_only and not args.with_radiographs else load_radiographs(args.data)  # CT holes are drawn first: the same either way
    engines = load_engines(args.ct_removal_checkpoint, args.ct_inpaint_checkpoint, args.rg_removal_checkpoint)
    examples = {"ct": [], "radiograph": [], "removal": []}
    removal, ranges = task_removal(engines, ct, rgs, n_fill_ct, n_fill_rg, rng, examples)
    t1 = time.perf_counter()
    if args.removal_only:  # the same holes (the removal task draws first from the seeded rng)
        paths = sheets(examples, args.out)
        summary = {"device": cpu_device(), "commit": git_commit(), "quick": args.quick, "seed": args.seed,
                   "removal_only": True, "ct_heldout_nodules": len(ct["images"]),
                   "ct_heldout_series": ct["n_heldout_series"], "removal": removal, "removal_data_range": ranges,
                   "seconds": {"removal": round(t1 - t0, 1)}, "sheets": {k: str(v) for k, v in paths.items()}}
        (args.out / "realism_results.json").write_text(json.dumps(summary, indent=1, default=float))
        emit({"benchmark": "realism.done", "device": cpu_device(), "seconds": summary["seconds"], "out": str(args.out)})
        return 0
    insertion, cnn = task_insertion(engines, ct, rgs, n_ins_ct, n_ins_rg, rng, examples)
    t2 = time.perf_counter()
    cnn_res = {m: task_cnn(cnn, m, rng, epochs, args.seed) for m in (*INSERT_METHODS, "real-nodule@site")
               if len(cnn.get(m, ())) >= 10}
    if len(cnn["real-nodule"]) >= 10:
        cnn_res["real-nodule (context-only control)"] = task_cnn(cnn, "real-nodule", rng, epochs, args.seed,
                                                                 context_only=True)
    if len(cnn["real-nodule@site"]) >= 10:
        cnn_res["real-nodule@site (context-only control)"] = task_cnn(cnn, "real-nodule@site", rng, epochs,
                                                                      args.seed, context_only=True)
    t3 = time.perf_counter()
    paths = sheets(examples, args.out)
    if args.copy_to_docs:
        for key, path in paths.items():
            shutil.copyfile(path, ROOT / "docs" / f"realism_{key}.png")
    summary = {
        "device": cpu_device(), "commit": git_commit(), "quick": args.quick, "seed": args.seed,
        "ct_heldout_nodules": len(ct["images"]), "ct_heldout_series": ct["n_heldout_series"],
        "ct_excluded_padded": ct["n_excluded_padded"],
        "removal": removal, "removal_data_range": ranges, "insertion": insertion, "cnn": cnn_res,
        "notes": ({"demo-texture": "demo_texture_inpaint was trained to inpaint phantom lesions, not to remove; "
                                   "run as a fill by overriding its backend's modes"} if "demo-texture" in engines else {}),
        "seconds": {"removal": round(t1 - t0, 1), "insertion": round(t2 - t1, 1), "cnn": round(t3 - t2, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "sheets": {k: str(v) for k, v in paths.items()},
    }
    (args.out / "realism_results.json").write_text(json.dumps(summary, indent=1, default=float))
    emit({"benchmark": "realism.done", "device": cpu_device(), "seconds": summary["seconds"], "out": str(args.out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
