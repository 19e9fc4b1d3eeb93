"""Training patches from a lesion-studio dataset folder (docs/dataset_format.md), per family.

- `shape` (P3 §IV-A): each lesion's mask, normalised to d_init = 100 px on the 256² canvas
  and resized to 128² (scaled with `patch_px` for small test models); target in {-1, 1}.
- `texture`, `cascade` (P3 §III-C, P0 §III-A): the P0 context crop (3·wm around the Eq. 1-2
  mask crop) of each lesion, resized to `patch_px`; the region to generate is the lesion.
  The same crop the inference plan cuts (`SynthesisPlan.model_inputs`).
- `outpaint` (P1 §3.2): the same crops with the region inverted: all but the lesion.
- `texture`, `cascade` with `objective = "remove"` (P0 §III-A, SPEC §1.2): non-lesion holes in
  lesion-free tissue of every image (lesion-free images and lesion-free parts of lesion
  images, a margin away from any lesion); the target is the tissue that was there. The patch
  is a `patch_px`² crop at the image's own pixel scale centred on the hole (`remove_patches`).
- `texture`, `cascade` with `nonlesion_pairs > 0` (P0 §III-A): besides the lesion patches,
  non-lesion pairs: the 3·wm context crop around a hole in lesion-free tissue, the target the
  tissue that was there (`nonlesion_pair_patches`); P0 trained its inpainter on both.
- `pix2pix` (P2 §3.1): the whole image resized to `patch_px`, conditioned on its mask; with
  `condition_classes = K` the mask keeps its class values 1..K (P2 §4: hemorrhage types) and
  the trainer one-hot encodes them (`class_condition`).
- `stylegan2-joint`, `stylegan2-cond` (P4 §3): with `patch_source = "lesion"` the P0 context
  crop of each lesion with *every* lesion inside it in the mask (the image shows them all);
  with `patch_source = "image"` the whole image resized, as pix2pix (P4 §4.1).
  `stylegan2-mask` (M-SG): the same crops, the mask holding the one lesion (a shape source).

Splits follow the dataset's per-case `split` (chosen per patient by the dataset author);
when it has no `val` cases, a seeded `val_fraction` of the training *patients* is held out
(P0 §III-B: 85/15). Images leave physical units only here: `[lo, hi]` → [-1, 1].
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from lesion_studio.core.dataset import CaseRecord, Dataset
from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.composition import outpaint_region
from lesion_studio.core.geometry.crops import (
    PixelBox,
    component_masks,
    context_box,
    extract_crop,
    lesion_bbox,
    p0_mask_crop,
    resize_image,
    resize_mask,
)
from lesion_studio.core.geometry.nonlesion import (
    P0_NONLESION_WIDTH_PX,
    lesion_free_region,
    sample_nonlesion_mask,
    shaped_hole,
)
from lesion_studio.core.geometry.size_modulation import normalize_training_mask
from lesion_studio.models.config import REMOVE_FAMILIES, STYLEGAN2_FAMILIES


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


#: Non-lesion holes drawn per training image for `remove` (P0 balances 1,800 stone-free crops
#: against 1,800 stone crops; lesion-studio draws a few per image, every image contributing).
REMOVE_HOLES_PER_IMAGE = 4
#: P0's [10, 50] px widths are native for images at least this wide; smaller images (phantoms,
#: thumbnails) scale the range down with their size (lesion-studio's choice, P0 is silent).
REMOVE_NATIVE_REFERENCE_PX = 256
#: Distance (px, native) a non-lesion hole keeps from any lesion pixel; scaled like the widths.
REMOVE_MARGIN_PX = 5
#: Smallest hole width and margin after scaling (px).
REMOVE_MIN_WIDTH_PX = 3
REMOVE_MIN_MARGIN_PX = 2
#: A hole wider than patch_px / 2 is cut from a larger crop downsampled by at most this factor.
REMOVE_MAX_DOWNSAMPLE = 2.0


@dataclass(frozen=True, eq=False)
class HoleOrigin:
    """Where a `remove` patch came from, in the image's own pixels.

    `box` is the native crop (`patch_px · scale` wide, inside the image); the hole footprint
    `hole` `(width_px, width_px)` sits at `(hole_row0, hole_col0)` of the image.
    """

    case_id: str
    box: PixelBox
    hole_row0: int
    hole_col0: int
    hole: np.ndarray

    @property
    def width_px(self) -> int:
        return int(self.hole.shape[0])

    def hole_in_image(self, shape: tuple[int, int]) -> np.ndarray:
        """The hole as a full `(H, W)` bool mask of the image."""
        out = np.zeros(shape, dtype=bool)
        h, w = self.hole.shape
        out[self.hole_row0 : self.hole_row0 + h, self.hole_col0 : self.hole_col0 + w] = self.hole
        return out


@dataclass
class PatchSet:
    """Patches in model range: `images` `(N, 1, P, P)` in [-1, 1]; `masks` `(N, 1, P, P)` in {0, 1}.

    For inpainting families `masks` marks the pixels to generate; for `shape` `images` is the
    target mask in {-1, 1}; for `pix2pix` `masks` is the condition. `origins` (objective
    "remove" only) says where each patch and its hole lie in the source image.
    `lesion_free` `(N,)` bool (None: all False) marks the non-lesion pairs among lesion
    patches (`nonlesion_pairs`): their region holds tissue, not a lesion.
    """

    images: torch.Tensor
    masks: torch.Tensor
    case_ids: list[str]
    patient_ids: list[str]
    origins: list[HoleOrigin] | None = None
    lesion_free: torch.Tensor | None = None

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
    image: np.ndarray, lesion: np.ndarray, patch_px: int, *, all_lesions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """P0's context crop around one lesion, resized: `(crop float32, lesion bool)`, `(patch_px,)*2`.

    `all_lesions` (optional, the image's whole lesion mask): the mask returned is this one
    cropped with the same box, so other lesions inside the crop are marked too.
    """
    box = context_box(p0_mask_crop(lesion_bbox(lesion)))  # P0 Eq. 1-2, §III-A: 3·wm
    crop = resize_image(extract_crop(image, box), (patch_px, patch_px))
    mask = resize_mask(extract_crop(lesion if all_lesions is None else all_lesions, box), (patch_px, patch_px))
    return crop, mask


def remove_scale(image_shape: tuple[int, int]) -> float:
    """How much smaller than native the P0 hole widths and margin are for an image (<= 1)."""
    return min(1.0, min(int(image_shape[0]), int(image_shape[1])) / REMOVE_NATIVE_REFERENCE_PX)


def remove_width_range(image_shape: tuple[int, int]) -> tuple[int, int]:
    """Non-lesion hole widths (px, inclusive) for an image: P0's [10, 50], scaled when small."""
    scale = remove_scale(image_shape)
    low = max(int(round(P0_NONLESION_WIDTH_PX[0] * scale)), REMOVE_MIN_WIDTH_PX)
    high = max(int(round(P0_NONLESION_WIDTH_PX[1] * scale)), low)
    return low, high


def remove_margin_px(image_shape: tuple[int, int]) -> int:
    """Distance (px) every non-lesion hole keeps from any lesion pixel of the image."""
    return max(int(math.ceil(REMOVE_MARGIN_PX * remove_scale(image_shape))), REMOVE_MIN_MARGIN_PX)


def remove_crop_side(width_px: int, patch_px: int) -> int | None:
    """Native side of the crop around a hole of `width_px`: `patch_px` when the hole fits
    comfortably (width <= patch_px / 2), else up to 2·patch_px (downsampled into the patch so
    the hole is patch_px / 2 wide); None when even that is not enough (the hole is skipped)."""
    side = max(int(patch_px), 2 * int(width_px))
    return side if side <= REMOVE_MAX_DOWNSAMPLE * patch_px else None


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """A random stream per (seed, case): the same patches whatever the order or subset of cases."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(case_id.encode())]))


def remove_patches(
    image: np.ndarray, lesion_mask: np.ndarray, patch_px: int, rng: np.random.Generator,
    *, n_holes: int = REMOVE_HOLES_PER_IMAGE, case_id: str = "",
) -> list[tuple[np.ndarray, np.ndarray, HoleOrigin]]:
    """Non-lesion holes in lesion-free tissue of one image (P0 §III-A): `(crop, hole, origin)`.

    Each hole has a width uniform in `remove_width_range` (capped at what a 2× downsampling
    fits into the patch: drawing only widths that fit is the same as skipping the others),
    a shape from `shaped_hole`, and a top-left uniform over the positions where its square
    stays `remove_margin_px` away from every lesion and its crop stays inside the image (a
    padded crop would mirror the hidden tissue into the context). `crop` float32 in image
    units and `hole` bool are `(patch_px, patch_px)`; the target is the crop itself.
    """
    image = np.asarray(image, dtype=np.float32)
    lesion = np.asarray(lesion_mask, dtype=bool)
    h, w = image.shape
    low, high = remove_width_range(image.shape)
    high = min(high, int(REMOVE_MAX_DOWNSAMPLE * patch_px) // 2)
    if high < low:
        return []
    free = lesion_free_region(lesion, margin_px=remove_margin_px(image.shape))
    out = []
    for _ in range(n_holes):
        width = int(rng.integers(low, high + 1))  # P0 §III-A: wm uniform in [10, 50] px (scaled)
        side = remove_crop_side(width, patch_px)
        if side is None or side > h or side > w:
            continue
        # a square top-left (r, c) whose crop fits: offset (side - width)//2 on each side
        offset = (side - width) // 2
        allowed = np.zeros_like(free)
        allowed[offset : h - side + offset + width, offset : w - side + offset + width] = True
        try:
            placed = sample_nonlesion_mask(rng, free & allowed, width_range_px=(width, width))
        except MaskError:
            continue  # no lesion-free square of this width fits here
        hole = shaped_hole(rng, width)
        box = PixelBox(placed.row0 - offset, placed.col0 - offset, side, side)
        crop = image[box.row0 : box.row1, box.col0 : box.col1]
        local = np.zeros((side, side), dtype=bool)
        local[offset : offset + width, offset : offset + width] = hole
        if side != patch_px:  # a hole wider than patch_px / 2: downsample (at most 2×)
            crop = resize_image(crop, (patch_px, patch_px))
            local = resize_mask(local, (patch_px, patch_px))
            if not local.any():
                continue
        origin = HoleOrigin(case_id=case_id, box=box, hole_row0=placed.row0, hole_col0=placed.col0, hole=hole)
        out.append((crop.astype(np.float32, copy=True), local, origin))
    return out


def _stack(images: list, masks: list, case_ids: list, patients: list, n: int, origins: list | None = None) -> PatchSet:
    if not images:
        return PatchSet(torch.zeros(0, 1, n, n), torch.zeros(0, 1, n, n), [], [], [] if origins is not None else None)
    return PatchSet(
        images=torch.from_numpy(np.stack(images)[:, None].astype(np.float32)),
        masks=torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)),
        case_ids=case_ids,
        patient_ids=patients,
        origins=origins,
    )


def build_remove_patches(
    dataset: Dataset, cases: list[CaseRecord], patch_px: int, normalizer: Normalizer, *, seed: int = 0,
) -> PatchSet:
    """Non-lesion hole patches (objective "remove") from every case, lesion-free or not.

    Holes avoid every lesion, whatever `run.lesion_label` selects: a hole over another kind
    of lesion would teach the model to paint that lesion. Seeded per case (`case_rng`).
    """
    images, masks, case_ids, patients, origins = [], [], [], [], []
    for case in cases:
        image = dataset.read_image(case)
        lesion_mask = dataset.read_mask(case)  # any nonzero label
        for crop, hole, origin in remove_patches(image, lesion_mask, patch_px, case_rng(seed, case.case_id),
                                                 case_id=case.case_id):
            images.append(normalizer.to_model(crop))
            masks.append(hole)
            case_ids.append(case.case_id)
            patients.append(case.patient_id)
            origins.append(origin)
    return _stack(images, masks, case_ids, patients, patch_px, origins)


def nonlesion_pair_patches(
    dataset: Dataset, cases: list[CaseRecord], patch_px: int, normalizer: Normalizer, count: int, *, seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[str]]:
    """P0 §III-A non-stone pairs for the inpainting families: `(images, holes, case_ids, patients)`.

    Each of the `count` pairs is a non-lesion mask in lesion-free tissue — its square `wm`
    uniform in P0's [10, 50] px (scaled for small images, `remove_width_range`), placed
    uniformly where it keeps `remove_margin_px` from every lesion, holding a `shaped_hole` —
    and P0's 3·wm context crop around it, resized to `patch_px` like the lesion patches
    (`images` in model range, `holes` bool). P0 draws them from stone-free images; a split
    without lesion-free images draws from the lesion-free tissue of its lesion images. Cases
    take turns; the draws depend only on `seed` and the case ids (`case_rng`).
    """
    free_cases = [c for c in cases if not c.has_lesion] or list(cases)
    images: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    case_ids: list[str] = []
    patients: list[str] = []
    if count <= 0 or not free_cases:
        return images, holes, case_ids, patients
    rngs = {c.case_id: case_rng(seed + 1, c.case_id) for c in free_cases}  # + 1: not the remove holes' stream
    misses = 0
    k = 0
    while len(images) < count and misses < 4 * len(free_cases):
        case = free_cases[k % len(free_cases)]
        k += 1
        rng = rngs[case.case_id]
        image = dataset.read_image(case)
        lesion = dataset.read_mask(case)
        free = lesion_free_region(lesion, margin_px=remove_margin_px(image.shape))
        try:
            placed = sample_nonlesion_mask(rng, free, width_range_px=remove_width_range(image.shape))
        except MaskError:
            misses += 1  # no lesion-free square fits in this image
            continue
        full = np.zeros(image.shape, dtype=bool)
        w = placed.width_px
        full[placed.row0 : placed.row0 + w, placed.col0 : placed.col0 + w] = shaped_hole(rng, w)
        box = context_box(placed.mask_crop)  # P0 §III-A: a 3·wm square at Mns
        hole = resize_mask(extract_crop(full, box), (patch_px, patch_px))
        if not hole.any():
            misses += 1
            continue
        images.append(normalizer.to_model(resize_image(extract_crop(image, box), (patch_px, patch_px))))
        holes.append(hole)
        case_ids.append(case.case_id)
        patients.append(case.patient_id)
    return images, holes, case_ids, patients


def class_label_map(mask_path, classes: int, patch_px: int, *, shape: tuple[int, int]) -> np.ndarray:
    """The label map of one case resized to `patch_px`² (uint8, 0 = background, 1..`classes`).

    Each class is resized on its own (`resize_mask`: no small lesion vanishes); a pixel two
    classes claim after resizing takes the higher class. `ConfigError` naming the file for a
    value outside 0..`classes`."""
    from lesion_studio.core.dataset import read_array

    if mask_path is None:
        return np.zeros((patch_px, patch_px), np.uint8)
    labels = np.asarray(read_array(mask_path))
    if labels.shape != tuple(shape):
        raise ConfigError(f"mask size {labels.shape} differs from its image {tuple(shape)}", mask_path)
    values = np.unique(labels)
    bad = [v for v in values.tolist() if v < 0 or v > classes or v != int(v)]
    if bad:
        raise ConfigError(f"model.condition_classes = {classes}: mask value {bad[0]} is not a class "
                          f"0..{classes} (0 background)", mask_path)
    out = np.zeros((patch_px, patch_px), np.uint8)
    for k in range(1, classes + 1):
        if (labels == k).any():
            out[resize_mask(labels == k, (patch_px, patch_px))] = k
    return out


def build_patches(
    dataset: Dataset, cases: list[CaseRecord], model, normalizer: Normalizer, *, lesion_label: int = 0,
    seed: int = 0,
) -> PatchSet:
    """All training patches of `cases` for the family of `model` (a family config).

    `seed` draws the non-lesion holes of objective "remove" (other objectives draw nothing).
    """
    family, n = model.family, model.patch_px
    if getattr(model, "objective", "inpaint") == "remove":
        if family not in REMOVE_FAMILIES:
            raise ConfigError(f"model.objective: 'remove' is for {' and '.join(REMOVE_FAMILIES)} models, not {family}")
        return build_remove_patches(dataset, cases, n, normalizer, seed=seed)
    images, masks, case_ids, patients = [], [], [], []
    # whole images resized: pix2pix (P2 §3.1) and the StyleGAN2 families on "image" (P4 §4.1)
    whole_image = family == "pix2pix" or getattr(model, "patch_source", "") == "image"
    # B-SG/C-SG pairs mark every lesion the crop shows; M-SG and the texture families one
    every_lesion = family in STYLEGAN2_FAMILIES and family != "stylegan2-mask"
    for case in cases:
        if not whole_image and not case.has_lesion:
            continue
        if lesion_label and case.mask_path is not None:
            from lesion_studio.core.dataset import read_array

            lesion_mask = read_array(case.mask_path) == lesion_label
        else:
            lesion_mask = dataset.read_mask(case)
        if whole_image:
            pixels = dataset.read_image(case)
            images.append(normalizer.to_model(resize_image(pixels, (n, n))))
            classes = getattr(model, "condition_classes", 0)
            masks.append(class_label_map(case.mask_path, classes, n, shape=pixels.shape) if classes
                         else resize_mask(lesion_mask, (n, n)))
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
                crop, lesion = lesion_context_patch(image, component, n,
                                                    all_lesions=lesion_mask if every_lesion else None)
                if not lesion.any():
                    continue
                if getattr(model, "invert_masks", False):  # outpainting: the band fraction the engine keeps
                    # (synthesis_engine._context_fraction); the engine's crop framing differs (native scale, not 3x)
                    region = outpaint_region(lesion, context_fraction=getattr(model, "context_fraction", 0.0))
                else:
                    region = lesion
                images.append(normalizer.to_model(crop))
                masks.append(region)
            case_ids.append(case.case_id)
            patients.append(case.patient_id)
    ratio = getattr(model, "nonlesion_pairs", 0.0)
    if ratio > 0 and family in REMOVE_FAMILIES and images:  # P0 §III-A: stone and non-stone pairs
        n_lesion = len(images)
        extra = nonlesion_pair_patches(dataset, cases, n, normalizer, int(round(ratio * n_lesion)), seed=seed)
        for mine, theirs in zip((images, masks, case_ids, patients), extra):
            mine.extend(theirs)
        patches = _stack(images, masks, case_ids, patients, n)
        patches.lesion_free = torch.arange(len(patches)) >= n_lesion
        return patches
    return _stack(images, masks, case_ids, patients, n)


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
