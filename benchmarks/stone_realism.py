"""Kidney-stone insertion realism on held-out real CT slices: a learned inpainter against
the `real-stone` copy-paste family, at the real stones' own sites.

P0's task (a stone inpainted into kidney tissue) on the TEZ_ROI_AUG coronal CT slices
(`../shared/data/kidney_stones_ct`, 8-bit display values, no spacing). Only the sessions that
`kidney_stone_split` holds out (`test`, 20 %) are used here; the learned model
(`scripts/train_default_models.py --task stone-inpaint`) never saw them. For every held-out
stone (`stone_outlines`: one mask component of at least 6 px, grown by its 2 px partial-volume
rim: the "outline" below):

1. the real stone is removed with the default fill (`auto-fill` through the engine), which
   gives a stone-free background at the same site;
2. each method puts a stone back inside the real stone's own outline on that background:
   - `learned`: the stone inpainter through the engine (`mode = "inpaint"`, the outline as
     the existing lesion, in place), as the app runs it;
   - `real-stone` (the classical baseline, the app's family): a real stone of the bundled
     library (training and validation sessions only) with a near area, its contrast over its
     own background resampled onto the outline and added with a softened edge;
3. measured against the real stone: masked MAE and PSNR inside the outline (8-bit units),
   contrast, boundary-gradient and texture ratios (`realism.lesion_stats`), and a small CNN's
   real-vs-synthetic AUC on 32² crops (session-grouped 5-fold CV, session-clustered bootstrap
   95 % CI; 0.5 = indistinguishable), with the context-only control (stones blanked in both classes).

    python benchmarks/stone_realism.py --checkpoint runs/default_models/stone-inpaint/run/best \
        [--data ../shared/data] [--out stone_realism_out] [--quick]

Prints JSON lines (device, commit) and writes stone_realism.json and a contact sheet to --out.
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

from benchmarks._common import cpu_device, emit, git_commit  # noqa: E402
from benchmarks.realism import centroid, crop32_pair, lesion_stats, masked_metrics, summarize, task_cnn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: 8-bit display values: the CNN's input range and the PSNR data range.
VALUE_RANGE = (0.0, 255.0)
#: Context-only control: stones (dilated 3 px) blanked to this value in both classes.
BLANK_VALUE = 100.0


def load_heldout(data: Path, work: Path, library_images_sha256: str | None = None) -> list[dict]:
    """The held-out sessions' stone slices (image, mask, session) of the kidney-stone dataset,
    built with `build_kidney_stones_dataset` into `work`. Session ids are numbered in time
    order, so the split holds only for the data the library was built from: other data
    (`library_images_sha256` differs) is refused."""
    import cv2

    from lesion_studio.core.public_datasets import build_kidney_stones_dataset, kidney_stone_split

    summary = build_kidney_stones_dataset(data / "kidney_stones_ct", work)
    if library_images_sha256 is not None and summary["images_sha256"] != library_images_sha256:
        raise SystemExit("the kidney-stone images differ from those the stone library was built from, so its "
                         "session split does not apply: rebuild it (scripts/build_stone_library.py)")
    doc = json.loads((work / "dataset.json").read_text())
    return [{"id": case["id"], "session": case["patient_id"],
             "image": cv2.imread(str(work / case["image"]), cv2.IMREAD_UNCHANGED).astype(np.float32),
             "mask": cv2.imread(str(work / case["mask"]), cv2.IMREAD_UNCHANGED) > 0}
            for case in doc["cases"] if case["has_lesion"] and kidney_stone_split(case["patient_id"]) == "test"]


def run_sites(held, engines, limit, seed) -> tuple[dict, list]:
    """Every method at every held-out stone site: per-method records and CNN crops."""
    from lesion_studio.core.classical.stone_library import stone_outlines
    from lesion_studio.core.errors import ConfigError
    from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

    rng = np.random.default_rng(seed)
    methods = [m for m in engines if m != "auto-fill"]
    recs = {m: [] for m in ("real", *methods)}
    cnn = {m: [] for m in recs}
    examples, refused = [], {m: 0 for m in ("removal", *methods)}
    sites = [(rec, comp) for rec in held for comp in stone_outlines(rec["mask"])]
    if limit:
        sites = [sites[i] for i in sorted(rng.choice(len(sites), size=min(limit, len(sites)), replace=False))]
    for site, (rec, comp) in enumerate(sites):
        img, centre = rec["image"], centroid(comp)
        remove = SynthesisRequest(mode="remove", centre_rc=centre, mask_source=MaskSource("existing"))
        # "existing": the outline in place (a drawn mask is re-centred on the rounded centre, up to 1 px off);
        # a seed per site, so real-stone's donor draw varies as it does between clicks in the app
        insert = SynthesisRequest(mode="inpaint", centre_rc=centre, mask_source=MaskSource("existing", label="real outline"),
                                  seed=seed * 100_000 + site)
        outs, step = {"real": img}, "removal"
        try:  # the default removal, through the engine: the stone-free background
            removed = engines["auto-fill"](img, remove, lesion_mask=comp, modality="CT").image
            for step in methods:
                outs[step] = engines[step](removed, insert, lesion_mask=comp, modality="CT").image
        except ConfigError as exc:  # e.g. a stone too large for a model's input: the site is left out for all
            refused[step] += 1
            emit({"benchmark": "stone_realism.refused", "step": step, "case": rec["id"], "reason": str(exc)})
            continue
        crop_rng_state = rng.integers(1 << 31)
        for method, out in outs.items():
            stats = lesion_stats(out, comp)
            if method != "real":
                stats |= masked_metrics(img, out, comp, VALUE_RANGE[1] - VALUE_RANGE[0])
            recs[method].append(stats)
            patch, pmask = crop32_pair(out, comp, centre, np.random.default_rng(crop_rng_state), jitter=3)
            cnn[method].append((patch, pmask, rec["session"]))
        if len(examples) < 12:
            examples.append({"id": rec["id"], "removed": removed, "centre": centre, **outs})
    return {"records": recs, "cnn": cnn, "refused": refused, "sites": len(sites)}, examples


def contact_sheet(examples: list[dict], path: Path) -> Path:
    """Rows: held-out stone sites; columns: real, removed (background), then each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ("real", "removed", *[k for k in examples[0] if k not in ("id", "removed", "centre", "real")])
    fig, axes = plt.subplots(len(examples), len(cols), figsize=(2.0 * len(cols), 2.0 * len(examples)))
    for i, ex in enumerate(examples):
        for j, key in enumerate(cols):
            ax = axes[i, j]
            patch, _ = crop32_pair(ex[key], np.zeros_like(ex[key], bool), ex["centre"], None, side=40)
            ax.imshow(patch, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(key, fontsize=9)
            if j == 0:
                ax.set_ylabel(ex["id"], fontsize=7)
    fig.suptitle("held-out kidney stones (40 px crops, 8-bit display values)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="[NAME=]PATH",
                   help="stone inpainters (stone-inpaint runs); NAME defaults to 'learned'")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "stone_realism_data")
    p.add_argument("--out", type=Path, default=Path("stone_realism_out"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="at most this many held-out sites (0: all)")
    p.add_argument("--epochs", type=int, default=30, help="real-vs-synthetic CNN epochs")
    p.add_argument("--quick", action="store_true", help="60 sites, 8 CNN epochs: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.epochs = args.limit or 60, 8
    from lesion_studio.models.inference import load_synthesizer

    t0 = time.perf_counter()
    engines = {"auto-fill": load_synthesizer("auto-fill")}
    checkpoints = dict(c.split("=", 1) if "=" in c else ("learned", c) for c in args.checkpoint)
    engines |= {name: load_synthesizer(path) for name, path in checkpoints.items()}
    engines["real-stone"] = load_synthesizer("real-stone")
    library = engines["real-stone"].backend.library
    held = load_heldout(args.data, args.work, library.meta.get("dataset_images_sha256"))
    leaked = set(library.sessions) & {r["session"] for r in held}
    if leaked:
        raise SystemExit(f"the stone library holds {len(leaked)} held-out session(s): rebuild it "
                         "(scripts/build_stone_library.py)")
    res, examples = run_sites(held, engines, args.limit, args.seed)
    rng = np.random.default_rng(args.seed)
    out = {"benchmark": "stone_realism", "device": cpu_device(), "commit": git_commit(),
           "checkpoints": checkpoints, "seed": args.seed,
           "heldout_sessions": len({r["session"] for r in held}), "heldout_slices": len(held),
           "library_stones": len(library), "library_sessions": len(set(library.sessions)),
           "library_sha256": library.sha256,
           "sites": res["sites"], "refused": res["refused"], "methods": {}}
    for method, recs in res["records"].items():
        keys = ("contrast", "boundary_grad_ratio", "texture_ratio") + (("mae", "psnr") if method != "real" else ())
        out["methods"][method] = {k: summarize([r[k] for r in recs]) for k in keys}
    for method in [m for m in engines if m != "auto-fill"]:
        out["methods"][method]["cnn"] = task_cnn(res["cnn"], method, rng, args.epochs, args.seed,
                                                 value_range=VALUE_RANGE)
        out["methods"][method]["cnn_context_only"] = task_cnn(res["cnn"], method, rng, args.epochs, args.seed,
                                                              context_only=True, value_range=VALUE_RANGE,
                                                              blank_value=BLANK_VALUE)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    out["contact_sheet"] = str(contact_sheet(examples, args.out / "stone_realism.png"))
    (args.out / "stone_realism.json").write_text(json.dumps(out, indent=1))
    emit({k: v for k, v in out.items() if k != "methods"} | {
        "summary": {m: {k: (v.get("mean") if "mean" in v else v.get("auc")) for k, v in d.items()}
                    for m, d in out["methods"].items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
