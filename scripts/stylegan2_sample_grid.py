"""Sample grids of the CT StyleGAN2 generators (issue 15) next to real slices, for a person to judge.

Rows: real slices of held-out series (never seen by any generator), their masks in cyan;
B-SG image + mask pairs; MC-SG pairs (M-SG mask → C-SG image); C-SG given the real held-out
masks of the first row (same mask, generated tissue). All at 64², −1100…400 HU shown as
the lung window (−1000…200 HU). Seeds are fixed, so reruns draw the same samples.

    python scripts/stylegan2_sample_grid.py --out docs/stylegan2_samples_cpu.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

WINDOW = (-1000.0, 200.0)


def real_heldout(data: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` centre slices of held-out series, padded to 64² with −1024 HU, and their masks."""
    from lesion_studio.core.classical.nodule_library import heldout_series_uids

    import csv

    src = data / "node21_ct_nodules" / "node21_ct_axial.npz"
    with open(src.parent / "nodules.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    npz = np.load(src)
    held = set(heldout_series_uids())
    names = [str(x) for x in npz["names"]]
    ok = [i for i, name in enumerate(names) if rows[name]["seriesuid"] in held and rows[name]["padded"] == "0"]
    pick = np.random.default_rng(seed).choice(ok, size=n, replace=False)
    centre = list(npz["slice_offsets"]).index(0)
    images = np.pad(npz["images"][pick, centre].astype(np.float32), ((0, 0), (7, 7), (7, 7)), constant_values=-1024)
    masks = np.pad(npz["masks"][pick, centre] > 0, ((0, 0), (7, 7), (7, 7)))
    return images, masks


def conditional_images(checkpoint: Path, masks: np.ndarray, seed: int) -> np.ndarray:
    """C-SG's images (HU) for given masks, EMA generator, fixed latents and noise."""
    import torch

    from lesion_studio.models.inference import _generator_from
    from lesion_studio.models.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint, family="stylegan2-cond", device="cpu")
    generator, model = _generator_from(ck, torch.device("cpu"))
    z = torch.randn(len(masks), model.z_dim, generator=torch.Generator().manual_seed(seed))
    cond = torch.from_numpy(masks.astype(np.float32) * 2 - 1)[:, None]
    with torch.no_grad():
        out = generator(z, cond, noise_mode="const").float().numpy()[:, 0]
    lo, hi = float(ck.meta["normalization"]["lo"]), float(ck.meta["normalization"]["hi"])
    return (out.clip(-1, 1) + 1) / 2 * (hi - lo) + lo


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lesion_studio.models.inference import load_pair_sampler
    from run_p4_sweep import latest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--bsg", type=Path, default=None)
    parser.add_argument("--msg", type=Path, default=None)
    parser.add_argument("--csg", type=Path, default=None)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "stylegan2_samples_cpu.png")
    args = parser.parse_args(argv)
    bsg = args.bsg or latest("stylegan2-joint")
    msg = args.msg or latest("stylegan2-mask")
    csg = args.csg or latest("stylegan2-cond")
    steps = {k: json.loads(p.with_suffix(".json").read_text())["step"] for k, p in
             (("B-SG", bsg), ("M-SG", msg), ("C-SG", csg))}
    real, real_masks = real_heldout(args.data, args.n, args.seed)
    b_img, b_mask = load_pair_sampler(bsg).sample(args.n, args.seed)
    m_img, m_mask = load_pair_sampler(msg, cond_checkpoint=csg).sample(args.n, args.seed)
    c_img = conditional_images(csg, real_masks, args.seed)
    rows = [("real, held-out series (never seen by a generator)", real, real_masks),
            (f"B-SG (image + mask together), step {steps['B-SG']}", b_img, b_mask),
            (f"MC-SG (M-SG step {steps['M-SG']} mask -> C-SG step {steps['C-SG']} image)", m_img, m_mask),
            ("C-SG given the real masks of the first row", c_img, real_masks)]
    cell, title_h = 1.1, 0.22  # inches: one image, one row title
    fig, axes = plt.subplots(len(rows), args.n, figsize=(cell * args.n, (cell + title_h) * len(rows)))
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - title_h / ((cell + title_h) * len(rows)),
                        wspace=0.04, hspace=title_h / cell)
    for r, (title, images, masks) in enumerate(rows):
        for c in range(args.n):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="nearest")
            mask = np.asarray(masks[c])
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        box = axes[r, 0].get_position()
        fig.text(box.x0, box.y1 + 0.004, title, fontsize=8, ha="left", va="bottom")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({', '.join(f'{k} step {v}' for k, v in steps.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
