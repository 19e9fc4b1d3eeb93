"""Texture presets trained on the same real CT patches for the same budget, scored on held-out series.

Usage: python benchmarks/preset_budget.py --data ../shared/data [--presets paper,deepfill,light]
       [--minutes 5] [--max-steps 100000] [--patch 32] [--batch 8] [--threads 1] [--out FILE.json]

Data: `node21_ct_nodules/node21_ct_axial.npz` (LIDC-IDRI via LUNA16 / NODE21, 1 mm, HU), split by
series UID: the 167 series of `resources/nodules/split.json` (the realism benchmark's held-out
scans) are scored, every other series trains; padded patches are left out. A patch is the centre
`--patch`² of a 50² slice, HU clipped to [−1100, 400] → [−1, 1]; the hole is the nodule mask
grown by 2 px (the engine's margin). Training uses every slice that shows the nodule; scoring
the centre slice of each held-out nodule.

Training (`models.trainer.TextureStep`, fp32, CPU): the presets' generators at `--patch`² with
dilations 1, 2, 4 (the bottleneck is `patch/4`² = 8²; P3's 2..16 would read padding), L1 on both
stages (weights 1), no perceptual term (no VGG weights offline) and no adversarial term (weight 0;
a 3-layer, 8-channel D still runs in the shared step), Adam 1e-3 (β 0.5, 0.999), constant rate,
batch `--batch`, the same seed, initial RNG state and batch order for every preset. Each preset
trains until `--minutes` of training time (evaluation not counted) or `--max-steps`. The presets
train interleaved, the one with the least training time so far taking the next step, so they
advance together in wall-clock time and share whatever load the machine carries.

Scores: masked L1 (model units) and masked PSNR (pooled MSE, data range 2) over the hole pixels
of the held-out patches, after `--same-steps` steps ("same steps") and at each preset's end
("same training time"); the paired per-patch masked-L1 difference to the first preset with a
series-clustered bootstrap 95 % CI; and each trained model's bf16-autocast error.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks._common import emit  # noqa: E402
from benchmarks._groups import load_1m, params_m  # noqa: E402
from lesion_studio.core.classical.nodule_library import heldout_series_uids  # noqa: E402
from lesion_studio.models.config import default_config  # noqa: E402
from lesion_studio.models.metrics import quality  # noqa: E402
from lesion_studio.models.presets import resolve_preset  # noqa: E402
from lesion_studio.models.runtime import bf16_native  # noqa: E402
from lesion_studio.models.trainer import TextureStep  # noqa: E402

CT_AXIAL = Path("node21_ct_nodules") / "node21_ct_axial.npz"
HU_RANGE = (-1100.0, 400.0)
HOLE_MARGIN_PX = 2


def load_patches(data: Path, patch: int) -> dict[str, dict[str, np.ndarray]]:
    """`{"train": ..., "heldout": ...}`, each with `images`, `masks` (N, 1, patch, patch) float32
    and `series` (N,): every nodule slice for training, the centre slice for scoring."""
    src = data / CT_AXIAL
    with open(src.parent / "nodules.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    npz = np.load(src)
    names = [str(n) for n in npz["names"]]
    series = np.array([rows[n]["seriesuid"] for n in names])
    padded = np.array([int(rows[n]["padded"]) for n in names], bool)
    held = np.isin(series, sorted(heldout_series_uids()))
    offsets = [int(v) for v in npz["slice_offsets"]]
    size = npz["images"].shape[-1]
    r0 = (size - patch) // 2
    crop = np.s_[..., r0 : r0 + patch, r0 : r0 + patch]
    images = npz["images"][crop].astype(np.float32)
    masks = npz["masks"][crop] > 0
    lo, hi = HU_RANGE
    images = np.clip((images - lo) / (hi - lo) * 2 - 1, -1, 1)
    grow = ndimage.generate_binary_structure(2, 1)
    out: dict[str, dict[str, list]] = {"train": {"images": [], "masks": [], "series": []},
                                       "heldout": {"images": [], "masks": [], "series": []}}
    for i in np.flatnonzero(~padded):
        split = "heldout" if held[i] else "train"
        slices = [offsets.index(0)] if split == "heldout" else range(len(offsets))
        for s in slices:
            if not masks[i, s].any():
                continue
            hole = ndimage.binary_dilation(masks[i, s], grow, iterations=HOLE_MARGIN_PX)
            if hole.mean() > 0.4:  # a nodule filling the crop leaves nothing to inpaint from
                continue
            out[split]["images"].append(images[i, s])
            out[split]["masks"].append(hole.astype(np.float32))
            out[split]["series"].append(series[i])
    assert not set(out["train"]["series"]) & set(out["heldout"]["series"]), "a held-out series reached training"
    return {k: {"images": np.stack(v["images"])[:, None], "masks": np.stack(v["masks"])[:, None],
                "series": np.array(v["series"])} for k, v in out.items()}


def model_for(spec: str, patch: int, batch: int):
    """The texture config of `spec` for this benchmark (see the module doc): a preset name, or a
    preset with integer/text fields changed, `light+dilated_mult=4+gate=full`."""
    preset, *changes = spec.split("+")
    fields = {k: int(v) if v.isdigit() else v for k, v in (c.split("=", 1) for c in changes)}
    model = dataclasses.replace(
        default_config("texture").model, preset=preset, patch_px=patch, dilations=[1, 2, 4],
        perceptual_weights="disabled", perceptual_weight=0.0, adversarial_weight=0.0,
        disc_channels=8, disc_layers=3, lr_g=1e-3, batch_size=batch, lr_milestones=[], **fields,
    )
    return resolve_preset(model)


@torch.no_grad()
def evaluate(strategy: TextureStep, images: torch.Tensor, masks: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """The composited output on the held-out patches (eval mode)."""
    strategy.generator.eval()
    outs = []
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for i in range(0, len(images), 64):
        with ctx:
            outs.append(strategy.generate(images[i : i + 64], masks[i : i + 64]).float())
    strategy.generator.train()
    return torch.cat(outs)


def scores(fake: torch.Tensor, real: torch.Tensor, masks: torch.Tensor) -> tuple[dict, np.ndarray]:
    """Pooled masked L1/PSNR/SSIM and the per-patch masked L1."""
    q = quality(fake, real, masks, data_range=2.0)
    per_patch = ((fake - real).abs() * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)
    return ({k: round(q[k], 4) for k in ("masked_l1", "masked_psnr", "masked_ssim")}, per_patch.numpy())


def clustered_ci(diff: np.ndarray, series: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """95 % CI of the mean of `diff`, resampling series (not patches) with replacement."""
    rng = np.random.default_rng(seed)
    uids = np.unique(series)
    groups = [np.flatnonzero(series == u) for u in uids]
    means = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(groups), len(groups))
        idx = np.concatenate([groups[j] for j in pick])
        means.append(diff[idx].mean())
    return [round(float(np.percentile(means, 2.5)), 5), round(float(np.percentile(means, 97.5)), 5)]


class PresetRun:
    """One preset in training: its step strategy, batch order, training time and scores."""

    def __init__(self, preset: str, data: dict, args: argparse.Namespace) -> None:
        self.preset, self.args = preset, args
        self.model = model_for(preset, args.patch, args.batch)
        torch.manual_seed(args.seed)  # the same initial RNG state for every preset
        self.strategy = TextureStep(self.model, args.max_steps, torch.device("cpu"), contextlib.nullcontext)
        self.strategy.generator.train()
        self.strategy.discriminator.train()
        self.train_x = torch.from_numpy(data["train"]["images"])
        self.train_m = torch.from_numpy(data["train"]["masks"])
        self.held_x = torch.from_numpy(data["heldout"]["images"])
        self.held_m = torch.from_numpy(data["heldout"]["masks"])
        self.order = np.random.default_rng(args.seed)  # the same batches, in the same order, for every preset
        self.step, self.train_s, self.losses = 0, 0.0, {}
        self.scores: dict[str, dict] = {}
        self.per_patch: dict[str, list] = {}
        self.loads: list[float] = [load_1m()]

    @property
    def done(self) -> bool:
        return self.step >= self.args.max_steps or self.train_s >= self.args.minutes * 60

    def train_one_step(self) -> None:
        idx = torch.from_numpy(self.order.integers(0, len(self.train_x), self.args.batch))
        t = time.perf_counter()
        self.losses = self.strategy.optimize_parameters(self.train_x[idx], self.train_m[idx], self.step)
        self.train_s += time.perf_counter() - t
        self.step += 1

    def score(self, point: str) -> torch.Tensor:
        fake = evaluate(self.strategy, self.held_x, self.held_m)
        q, pp = scores(fake, self.held_x, self.held_m)
        self.scores[point] = {**q, "step": self.step, "train_s": round(self.train_s, 1)}
        self.per_patch[point] = pp.tolist()
        self.loads.append(load_1m())
        return fake

    def record(self, fake: torch.Tensor) -> dict:
        """The JSON record at the end of training (`fake`: the end's held-out output)."""
        m = self.model
        rec = {
            "bench": "preset_budget", "preset": self.preset, "g_params_m": params_m(self.strategy.generator),
            "architecture": {k: getattr(m, k) for k in ("base_channels", "gate", "dilated_mult", "dilations", "patch_px")},
            "steps": self.step, "train_s": round(self.train_s, 1), "s_per_step": round(self.train_s / max(self.step, 1), 3),
            "last_l1_refine": round(self.losses.get("l1_refine", float("nan")), 4), "scores": self.scores,
            "threads": torch.get_num_threads(), "load_1m_min": min(self.loads), "load_1m_max": max(self.loads),
        }
        if bf16_native(torch.device("cpu")):
            diff = (evaluate(self.strategy, self.held_x, self.held_m, bf16=True) - fake).abs()[self.held_m.bool()]
            rec["bf16_error_model_units"] = {"max_abs": round(float(diff.max()), 5), "mean_abs": round(float(diff.mean()), 5)}
        return rec


def train_interleaved(runs: list[PresetRun], same_steps: int) -> list[dict]:
    """Train every run to its budget, always stepping the one with the least training time so
    far: the presets advance together in wall-clock time, so load that comes and goes (other
    jobs on the machine) hits them alike. Scores at `same_steps` and at each run's end."""
    records: dict[str, dict] = {}
    while len(records) < len(runs):
        run = min((r for r in runs if r.preset not in records), key=lambda r: r.train_s)
        run.train_one_step()
        if run.step == same_steps:
            run.score(f"step_{same_steps}")
        if run.done:
            records[run.preset] = run.record(run.score("end"))
            emit(records[run.preset])
    return [records[r.preset] for r in runs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the folder holding node21_ct_nodules/")
    p.add_argument("--presets", default="paper,deepfill,light",
                   help="presets (or variants, light+dilated_mult=4); the first is the one the others are compared with")
    p.add_argument("--same-steps", type=int, default=60, help="also score every preset after this many steps")
    p.add_argument("--minutes", type=float, default=5.0, help="training time per preset")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write every record (with per-patch L1) here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_patches(args.data, args.patch)
    emit({"bench": "preset_budget_data", "train_patches": len(data["train"]["images"]),
          "train_series": len(set(data["train"]["series"])), "heldout_patches": len(data["heldout"]["images"]),
          "heldout_series": len(set(data["heldout"]["series"])), "patch_px": args.patch})
    runs = [PresetRun(preset, data, args) for preset in args.presets.split(",")]
    records = train_interleaved(runs, args.same_steps)
    series = data["heldout"]["series"]
    first = runs[0]
    for run in runs[1:]:
        for point, label in ((f"step_{args.same_steps}", "same steps"), ("end", "same training time")):
            if point not in run.per_patch or point not in first.per_patch:
                continue
            diff = np.asarray(run.per_patch[point]) - np.asarray(first.per_patch[point])
            emit({"bench": "preset_budget_paired", "preset": run.preset, "vs": first.preset, "point": label,
                  "steps": [first.scores[point]["step"], run.scores[point]["step"]],
                  "masked_l1_diff_mean": round(float(diff.mean()), 5), "ci95_series_bootstrap": clustered_ci(diff, series),
                  "patches": int(diff.size), "series": int(len(set(series)))})
    for run, record in zip(runs, records):
        record["_per_patch"] = run.per_patch
    if args.out is not None:
        args.out.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
