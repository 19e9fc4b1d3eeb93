"""Outpainting realism on held-out CT nodules: learned outpainters next to a classical copy-paste.

Outpainting (P1 §3.2, mode "outpaint") keeps a lesion and regenerates its surroundings in P0's
3x crop. On the realism benchmark's held-out series (`resources/nodules/split.json`, centre
slices of node21_ct_axial.npz, never seen by a default model), for the same nodules:

- each `--checkpoint NAME=STEM` (outpaint family) runs the app's engine path
  (`load_synthesizer(stem)`, mode "outpaint", the nodule as the existing mask);
- `texture-fill` (the app's classical outpainter, the same engine path): the crop around the
  kept nodule refilled smoothly from the crop's outer band (the biharmonic base: no donor fits);
- `copy-paste` (a classical reference, not an app method): the nodule (its mask grown by 1 px) pasted with the
  engine's 3 px feathered seam into ANOTHER held-out patient's slice whose own nodule was removed
  first (`auto-fill`): real surroundings, a foreign seam.

Measured: a small CNN's real-vs-synthetic AUC (series-grouped 5-fold CV with a series-clustered
bootstrap CI, `realism.task_cnn`) on 32² windows around the nodule: the lesion is real in both
classes, so what it finds is in the surroundings and the seam; the surroundings' fine texture
(high-pass σ 1 px std in the ring 2-10 px outside the lesion, ratio to the real slice's) and
mean HU there; PSNR/MAE in that ring against the original (outpainting need not reproduce it: recorded,
not a criterion). Writes outpaint_results.json and a contact sheet (outpaint_ct.png) to --out.

    python benchmarks/outpaint_realism.py --checkpoint ct_nodule_outpaint=runs/default_models/ct-outpaint/run/best \
        [--checkpoint demo=path/to/demo_outpaint] [--data ../shared/data] [--out outpaint_out] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks._common import cpu_device, emit, git_commit  # noqa: E402
from benchmarks.realism import (CT_WINDOW, centroid, crop32, crop32_pair, load_ct, masked_metrics,  # noqa: E402
                                seed_everything, summarize, task_cnn)

COPY_PASTE = "copy-paste"
TEXTURE_FILL = "texture-fill"
#: The ring whose texture and HU are compared: 2-10 px outside the lesion (inside P0's crop).
RING_PX = (2, 10)


def surroundings(img: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """The ring RING_PX outside `lesion` (bool)."""
    outside = ndimage.distance_transform_edt(~lesion)
    return (outside > RING_PX[0]) & (outside <= RING_PX[1])


def texture_std(img: np.ndarray, where: np.ndarray) -> float:
    """Std of the high-pass (σ 1 px) image in `where`: fine texture, not the smooth trend."""
    hp = img.astype(np.float64) - ndimage.gaussian_filter(img.astype(np.float64), 1.0)
    return float(hp[where].std())


def outpaint(engine, img: np.ndarray, nodule: np.ndarray, seed: int):
    """The engine's outpainting of `img` around `nodule` (the image), or None when refused."""
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

    req = SynthesisRequest(mode="outpaint", centre_rc=centroid(nodule), mask_source=MaskSource("existing"), seed=seed)
    try:
        return engine(img, req, lesion_mask=nodule, spacing_mm=(1.0, 1.0), modality="CT").image
    except ConfigError:
        return None


def copy_paste(remover, img: np.ndarray, nodule: np.ndarray, host: np.ndarray, host_nodule: np.ndarray):
    """`nodule` (grown 1 px) of `img` pasted into `host` after removing the host's own nodule."""
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.synthesis_engine import seam_alpha
    from lesion_studio.core.synthesis_plan import DEFAULT_FEATHER_PX, MaskSource, SynthesisRequest

    req = SynthesisRequest(mode="remove", centre_rc=centroid(host_nodule), mask_source=MaskSource("existing"))
    try:
        emptied = remover(host, req, lesion_mask=host_nodule, spacing_mm=(1.0, 1.0), modality="CT").image
    except ConfigError:
        return None
    alpha = seam_alpha(ndimage.binary_dilation(nodule), DEFAULT_FEATHER_PX)
    return (alpha * img + (1 - alpha) * emptied).astype(np.float32)


def run(args) -> dict:
    from lesion_studio.models.inference import load_synthesizer

    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    ct = load_ct(args.data)
    engines = {name: load_synthesizer(stem) for name, stem in args.checkpoint}
    engines[TEXTURE_FILL] = load_synthesizer(TEXTURE_FILL)  # the app's classical outpainter
    remover = load_synthesizer("auto-fill")
    methods = [*engines, COPY_PASTE]
    usable = [i for i, m in enumerate(ct["masks"]) if m.sum() >= 4]
    order = rng.permutation(usable)[: args.n]
    cnn = {"real": []} | {m: [] for m in methods}
    stats = {"real": []} | {m: [] for m in methods}
    refused = {m: 0 for m in methods}
    examples = []
    for i in order:
        img, nod, series = ct["images"][i], ct["masks"][i], ct["series"][i]
        seed = int(rng.integers(0, 2**31 - 1))
        others = [j for j in usable if ct["series"][j] != series]
        j = int(others[rng.integers(len(others))])
        outs = {name: outpaint(engine, img, nod, seed) for name, engine in engines.items()}
        outs[COPY_PASTE] = copy_paste(remover, img, nod, ct["images"][j], ct["masks"][j])
        ring = surroundings(img, nod)
        # the same jittered window for every method and the real slice
        window_rng = np.random.default_rng(seed)
        offset = window_rng.integers(-6, 7, size=2)
        centre = (centroid(nod)[0] + offset[0], centroid(nod)[1] + offset[1])
        cnn["real"].append((*crop32_pair(img, nod, centre, None), series))
        stats["real"].append({"texture": texture_std(img, ring), "ring_hu": float(img[ring].mean())})
        ex = {"real": crop32(img, centroid(nod), None)}
        for name, out in outs.items():
            if out is None:
                refused[name] += 1
                continue
            cnn[name].append((*crop32_pair(out, nod, centre, None), series))
            stats[name].append({"texture": texture_std(out, ring), "ring_hu": float(out[ring].mean()),
                                **masked_metrics(img, out, ring, CT_WINDOW[1] - CT_WINDOW[0])})
            ex[name] = crop32(out, centroid(nod), None)
        if len(examples) < 10:
            examples.append(ex)
    real_tex = np.array([s["texture"] for s in stats["real"]])
    table = {"real": {"n": len(stats["real"]), "texture_std_hu": summarize(real_tex),
                      "ring_hu": summarize([s["ring_hu"] for s in stats["real"]])}}
    for name in methods:
        recs = stats[name]
        if not recs:
            table[name] = {"n": 0, "refused": refused[name]}
            continue
        tex = np.array([s["texture"] for s in recs])
        table[name] = {"n": len(recs), "refused": refused[name], "texture_std_hu": summarize(tex),
                       "texture_ratio_median": float(np.median(tex) / np.median(real_tex)),
                       "ring_hu": summarize([s["ring_hu"] for s in recs]),
                       **{k: summarize([s[k] for s in recs]) for k in ("psnr", "mae")}}
    cnn_res = {m: task_cnn(cnn, m, rng, args.epochs, args.seed) for m in methods if len(cnn[m]) >= 10}
    return {"table": table, "cnn": cnn_res, "examples": examples, "n_heldout_series": ct["n_heldout_series"],
            "nodules": int(len(order))}


def sheet(examples: list[dict], methods: list[str], path: Path) -> Path:
    """Real 32² windows and each method's outpainting of the same nodules (lung window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["real", *methods]
    fig, axes = plt.subplots(len(examples), len(cols), figsize=(1.6 * len(cols), 1.6 * len(examples)), squeeze=False)
    for r, ex in enumerate(examples):
        for c, key in enumerate(cols):
            ax = axes[r, c]
            ax.axis("off")
            if key in ex:
                ax.imshow(ex[key], cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1])
            if r == 0:
                ax.set_title(key, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=STEM",
                   help="an outpaint checkpoint to score (repeatable)")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--out", type=Path, default=Path("outpaint_out"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="40 nodules, 3 CNN epochs: a smoke run")
    args = p.parse_args()
    pairs = []
    for item in args.checkpoint:
        name, sep, stem = item.partition("=")
        if not sep or not name or not stem:
            p.error(f"--checkpoint {item!r}: expected NAME=STEM")
        if not Path(stem + ".json").is_file():
            p.error(f"--checkpoint {item!r}: {stem}.json does not exist")
        pairs.append((name, Path(stem)))
    args.checkpoint = pairs
    args.n, args.epochs = (40, 3) if args.quick else (10**6, 25)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run(args)
    methods = [name for name, _ in pairs] + [TEXTURE_FILL, COPY_PASTE]
    path = sheet(result.pop("examples"), methods, args.out / "outpaint_ct.png")
    summary = {"device": cpu_device(), "commit": git_commit(), "seed": args.seed, "quick": args.quick,
               "checkpoints": {name: str(stem) for name, stem in pairs}, **result, "sheet": str(path),
               "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "outpaint_results.json").write_text(json.dumps(summary, indent=1, default=float))
    for name, row in result["table"].items():
        cnn = result["cnn"].get(name)
        emit({"benchmark": "outpaint_realism", "method": name, "device": cpu_device(), "n": row["n"],
              **({"auc": round(cnn["auc"], 4), "ci95": [round(v, 4) for v in cnn["ci95"]]} if cnn else {}),
              "texture_ratio_median": row.get("texture_ratio_median")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
