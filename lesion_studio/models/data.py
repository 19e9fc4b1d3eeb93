"""Training patches from a lesion-studio dataset folder (docs/dataset_format.md), per family.

- `shape` (P3 §IV-A): each lesion's mask, normalised to d_init = 100 px on the 256² canvas
  and resized to 128² (scaled with `patch_px` for small test models); target in {-1, 1}.
- `texture`, `cascade` (P3 §III-C, P0 §III-A): the P0 context crop (3·wm around the Eq. 1-2
  mask crop) of each lesion, resized to `patch_px`; the region to generate is the lesion.
  The same crop the inference plan cuts (`SynthesisPlan.model_inputs`).
- `outpaint` (P1 §3.2): the same crops with the region inverted: all but the lesion.
- `pix2pix` (P2 §3.1): the whole image resized to `patch_px`, conditioned on its mask.

Splits follow the dataset's per-case `split` (chosen per patient by the dataset author);
when it has no `val` cases, a seeded `val_fraction` of the training *patients* is held out
(P0 §III-B: 85/15). Images leave physical units only here: `[lo, hi]` → [-1, 1].
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from lesion_studio.core.dataset import CaseRecord, Dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.composition import outpaint_region
from lesion_studio.core.geometry.crops import (
    component_masks,
    context_box,
    extract_crop,
    lesion_bbox,
    p0_mask_crop,
    resize_image,
    resize_mask,
)
from lesion_studio.core.geometry.size_modulation import normalize_training_mask


@dataclass(frozen=True)
class Normalizer:
    """Maps image units `[lo, hi]` to the model's [-1, 1] and back (clipped)."""

    lo: float
    hi: float

    def to_model(self, pixels: np.ndarray) -> np.ndarray:
        x = (np.asarray(pixels, dtype=np.float32) - self.lo) / (self.hi - self.lo)
        return np.clip(2.0 * x - 1.0, -1.0, 1.0).astype(np.float32)

    def to_units(self, values: np.ndarray) -> np.ndarray:
        x = (np.asarray(values, dtype=np.float32) + 1.0) / 2.0
        return (self.lo + x * (self.hi - self.lo)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi}


@dataclass
class PatchSet:
    """Patches in model range: `images` `(N, 1, P, P)` in [-1, 1]; `masks` `(N, 1, P, P)` in {0, 1}.

    For inpainting families `masks` marks the pixels to generate; for `shape` `images` is the
    target mask in {-1, 1}; for `pix2pix` `masks` is the condition.
    """

    images: torch.Tensor
    masks: torch.Tensor
    case_ids: list[str]
    patient_ids: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def split_cases(dataset: Dataset, val_fraction: float, seed: int) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """Train and validation cases, never sharing a patient."""
    train = list(dataset.split("train"))
    val = list(dataset.split("val"))
    if not train:
        raise ConfigError("the dataset has no 'train' cases", dataset.root)
    if val or val_fraction <= 0:
        return train, val
    patients = sorted({c.patient_id for c in train})
    if len(patients) < 2:
        return train, []
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(patients))))
    held = set(rng.choice(patients, size=n_val, replace=False).tolist())
    return [c for c in train if c.patient_id not in held], [c for c in train if c.patient_id in held]


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over dataset.json and the size of every file it lists (cheap, content-sensitive)."""
    h = hashlib.sha256((dataset.root / "dataset.json").read_bytes())
    for case in dataset.cases:
        for path in (case.image_path, case.mask_path):
            if path is not None:
                h.update(f"{path.relative_to(dataset.root)}:{path.stat().st_size}".encode())
    return h.hexdigest()


def dataset_value_range(dataset: Dataset, cases: list[CaseRecord]) -> Normalizer:
    """0.5/99.5 percentiles of the training images: robust to a few bright or dark pixels."""
    samples = []
    for case in cases:
        pixels = dataset.read_image(case).ravel()
        samples.append(pixels[:: max(1, pixels.size // 20000)])
    values = np.concatenate(samples)
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return Normalizer(float(lo), float(hi))


def lesion_context_patch(
    image: np.ndarray, lesion: np.ndarray, patch_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """P0's context crop around one lesion, resized: `(crop float32, lesion bool)`, `(patch_px,)*2`."""
    box = context_box(p0_mask_crop(lesion_bbox(lesion)))  # P0 Eq. 1-2, §III-A: 3·wm
    crop = resize_image(extract_crop(image, box), (patch_px, patch_px))
    mask = resize_mask(extract_crop(lesion, box), (patch_px, patch_px))
    return crop, mask


def build_patches(
    dataset: Dataset, cases: list[CaseRecord], model, normalizer: Normalizer, *, lesion_label: int = 0,
) -> PatchSet:
    """All training patches of `cases` for the family of `model` (a family config)."""
    family, n = model.family, model.patch_px
    images, masks, case_ids, patients = [], [], [], []
    for case in cases:
        if family != "pix2pix" and not case.has_lesion:
            continue
        if lesion_label and case.mask_path is not None:
            from lesion_studio.core.dataset import read_array

            lesion_mask = read_array(case.mask_path) == lesion_label
        else:
            lesion_mask = dataset.read_mask(case)
        if family == "pix2pix":
            image = normalizer.to_model(resize_image(dataset.read_image(case), (n, n)))
            images.append(image)
            masks.append(resize_mask(lesion_mask, (n, n)))
            case_ids.append(case.case_id)
            patients.append(case.patient_id)
            continue
        image = dataset.read_image(case) if family != "shape" else None
        for component in component_masks(lesion_mask):
            if family == "shape":
                d_init = model.normalize_diameter_px * n / 128.0  # P3 §IV-A, scaled with patch_px
                shape = normalize_training_mask(component, d_init_px=d_init, patch_px=2 * n, out_px=n)
                images.append(np.where(shape, 1.0, -1.0).astype(np.float32))
                masks.append(shape)
            else:
                crop, lesion = lesion_context_patch(image, component, n)
                if not lesion.any():
                    continue
                region = outpaint_region(lesion) if getattr(model, "invert_masks", False) else lesion
                images.append(normalizer.to_model(crop))
                masks.append(region)
            case_ids.append(case.case_id)
            patients.append(case.patient_id)
    if not images:
        return PatchSet(torch.zeros(0, 1, n, n), torch.zeros(0, 1, n, n), [], [])
    return PatchSet(
        images=torch.from_numpy(np.stack(images)[:, None].astype(np.float32)),
        masks=torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)),
        case_ids=case_ids,
        patient_ids=patients,
    )


def batch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Indices of the patches of `step` on `rank`: a seeded permutation per epoch, sharded by rank.

    A pure function of its arguments, so resuming at any step draws the same batches.
    """
    per_step = batch_size * world_size
    per_epoch = max(n // per_step, 1)
    epoch, within = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if n < per_step:
        perm = perm.repeat((per_step + n - 1) // n)
    chunk = perm[within * per_step : (within + 1) * per_step]
    return chunk[rank::world_size]


def flip_augment(images: torch.Tensor, masks: torch.Tensor, step: int, seed: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal and vertical flips per sample (masks follow), seeded by (seed, step, rank)."""
    g = torch.Generator().manual_seed(seed * 7_919 + step * 31 + rank + 1)
    flips = torch.randint(0, 2, (images.shape[0], 2), generator=g).bool()
    images, masks = images.clone(), masks.clone()
    for i in range(images.shape[0]):
        dims = [d for d, f in zip((-1, -2), flips[i].tolist()) if f]
        if dims:
            images[i] = images[i].flip(dims)
            masks[i] = masks[i].flip(dims)
    return images, masks
