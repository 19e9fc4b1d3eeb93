"""Where the "real + synthetic" condition's synthetic training images come from.

Every source returns `SyntheticCase`s that carry the patient ids they derive from (the real
image, the mask bank's lesions), so the experiment can check and record patient isolation.

* `DatasetSyntheticSource`: a folder of already-synthesized images in the dataset format
  (what batch export writes), whose `patient_id` names the real patient each image was made
  from; only cases of the allowed patients (the fold's training patients of the sampled
  fraction) are used.
* `PhantomLesionPainter`: a CHEAP STAND-IN, not a GAN: it pastes phantom-style lesions
  (`core.phantom.lesion_shape` outlines, a dense centre fading to the edge) onto real
  training images at requested diameters (P3's moment diameter, the size control's
  definition). Tests and tutorials use it; real studies use a trained generator.
* `CheckpointSynthesisSource`: a trained generator run in-process.
* `models.pair_source.PairSamplerSource`: whole generated cases (image + mask) from P4's
  B-SG or MC-SG, for the generated-count sweeps (`models.sweeps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.phantom import lesion_shape


@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic training image: `image` `(H, W)` float32, `mask` `(H, W)` bool, and the
    ids of every patient it was made from (its base image, the lesion shapes it may carry)."""

    image: np.ndarray
    mask: np.ndarray
    patients: frozenset[str]


@dataclass(frozen=True)
class DatasetSyntheticSource:
    """Synthetic cases from a dataset folder; `select` picks `n` of them reproducibly."""

    root: Path

    def select(self, n: int, allowed_patients: set[str] | frozenset[str], seed: int) -> list[SyntheticCase]:
        """Up to `n` cases, only those whose `patient_id` is in `allowed_patients`."""
        ds = load_dataset(self.root)
        cases = [c for c in ds.cases if c.patient_id in allowed_patients]
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(len(cases))[:n]
        return [SyntheticCase(ds.read_image(cases[i]), ds.read_mask(cases[i]), frozenset({cases[i].patient_id}))
                for i in sorted(chosen)]


@dataclass(frozen=True)
class PhantomLesionPainter:
    """Paints phantom-style lesions (not GAN output) into real images; see the module docstring.

    `contrast` is in units of the image's standard deviation, so it works for any modality.
    """

    contrast_sd: tuple[float, float] = (1.5, 3.0)

    def paint(self, image: np.ndarray, mask: np.ndarray, diameter_px: float, rng: np.random.Generator,
              location: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One new lesion whose moment diameter (P3 d_init) is about `diameter_px`, at a free
        spot (inside `location` when given)."""
        image = np.asarray(image, np.float32).copy()
        mask = np.asarray(mask, bool).copy()
        h, w = image.shape
        radius = max(diameter_px / 2.0, 1.0)
        allowed = ~ndimage.binary_dilation(mask, iterations=int(radius) + 2)
        if location is not None:
            allowed &= np.asarray(location, bool)
        margin = int(math.ceil(radius)) + 1
        allowed[:margin], allowed[-margin:], allowed[:, :margin], allowed[:, -margin:] = False, False, False, False
        candidates = np.argwhere(allowed)
        if candidates.size == 0:
            return image, mask
        r, c = candidates[int(rng.integers(len(candidates)))]
        harmonics = np.stack([rng.uniform(0, 0.08, 3), rng.uniform(0, 2 * math.pi, 3)], axis=1)
        elongation, angle = float(rng.uniform(1.0, 1.3)), float(rng.uniform(0, math.pi))
        shape, rho = lesion_shape(max(h, w), (r + 0.5, c + 0.5), radius, elongation, angle, harmonics)
        if shape.any() and diameter_px >= 2.0:  # one correction: the moment diameter is the size
            measured = moment_diameter(shape)
            if measured > 0:
                radius *= diameter_px / measured
                shape, rho = lesion_shape(max(h, w), (r + 0.5, c + 0.5), radius, elongation, angle, harmonics)
        shape = shape[:h, :w] & ~mask
        rho = rho[:h, :w]
        sd = float(image.std()) or 1.0
        contrast = float(rng.uniform(*self.contrast_sd)) * sd
        profile = contrast * (0.6 + 0.4 * np.sqrt(np.clip(1 - rho * rho, 0, 1)))
        image += np.where(shape, profile, 0).astype(np.float32)
        return image, mask | shape

    def synthesize(self, images: list[np.ndarray], masks: list[np.ndarray], n: int, rng: np.random.Generator,
                   *, patients: list[str], diameters_px: np.ndarray | None = None,
                   diameters_mm: np.ndarray | None = None, pixel_mm: list[float | None] | None = None,
                   default_diameter_px: tuple[float, float] = (3.0, 8.0), draw: bool = True) -> list[SyntheticCase]:
        """`n` synthetic cases: each takes a random real image (of patient `patients[k]`) and
        paints one lesion whose diameter is drawn uniformly from `diameters_mm` (converted with
        that image's own `pixel_mm[k]`; `diameters_px[j]` stands in for `diameters_mm[j]` on an
        image without spacing), from `diameters_px` (P3 §III-D), or from a range. `draw=False`: the
        i-th case takes the i-th diameter instead (they were drawn already)."""
        if len(patients) != len(images):
            raise ValueError("one patient id per image is needed")
        out = []
        for i in range(n):
            k = int(rng.integers(len(images)))
            drawn = diameters_mm if diameters_mm is not None else diameters_px
            if drawn is not None and len(drawn):
                j = int(rng.integers(len(drawn))) if draw else i % len(drawn)
                if diameters_mm is not None and pixel_mm is not None and pixel_mm[k]:
                    d = float(diameters_mm[j]) / float(pixel_mm[k])
                elif diameters_px is not None:
                    d = float(diameters_px[j])
                else:
                    raise ValueError(f"image {k} has no pixel spacing to convert diameters in mm")
            else:
                d = float(rng.uniform(*default_diameter_px))
            image, mask = self.paint(images[k], masks[k], d, rng)
            out.append(SyntheticCase(image, mask, frozenset({patients[k]})))
        return out


@dataclass(frozen=True)
class CheckpointSynthesisSource:
    """In-process synthesis with a trained generator (issue 5's `load_synthesizer`): for each
    synthetic image a random training case is taken, `plan_augmentation` plans its P0 steps
    (new lesions from a mask bank of the fold's training lesions, sizes drawn from
    `diameters_mm` when given, P3 §III-D) and the synthesizer applies them in order.
    Returns images in the dataset's units; the runner resizes and normalises them. Each case
    names its image's patient and the patients of the mask bank (any of its lesions may be
    drawn); `generator_patients` reads the ones the checkpoint was trained on."""

    checkpoint: Path | str
    device: str = "cpu"
    remove_method: str = "auto-fill"  # removal steps when the checkpoint does not remove (SPEC §4.1)

    def generator_patients(self) -> dict[str, list[str]] | None:
        """`{"train": [...], "val": [...]}` from the checkpoint's metadata; None when unrecorded."""
        from lesion_studio.models.patient_isolation import checkpoint_patients

        return checkpoint_patients(self.checkpoint)

    def synthesize(self, dataset, cases, n: int, seed: int, *, diameters_mm=None) -> list[SyntheticCase]:
        from lesion_studio.core.augmentation_plan import plan_augmentation
        from lesion_studio.core.mask_bank import MaskBank
        from lesion_studio.models.inference import load_synthesizer

        if n == 0:
            return []
        synth = load_synthesizer(self.checkpoint, self.device)
        remover = synth if "remove" in synth.modes else load_synthesizer(self.remove_method, self.device)
        lesion_cases = [c for c in cases if c.has_lesion]
        if not lesion_cases:
            raise ValueError("in-process synthesis needs training cases with lesion masks for its mask bank")
        bank_patients = frozenset(c.patient_id for c in lesion_cases)
        bank = MaskBank.from_masks([dataset.read_mask(c) for c in lesion_cases],
                                   spacings_mm=[dataset.spacing_for(c) for c in lesion_cases],
                                   sources=[c.case_id for c in lesion_cases])
        rng = np.random.default_rng(seed)
        out = []
        for k in range(n):
            case = cases[int(rng.integers(len(cases)))]
            image, mask = dataset.read_image(case), dataset.read_mask(case)
            spacing = dataset.spacing_for(case)
            plan = plan_augmentation(image.shape, lesion_mask=mask, location_map=dataset.read_location_map(case),
                                     bank=bank, seed=int(rng.integers(2**31)), spacing_mm=spacing,
                                     diameters_mm=diameters_mm, model_input_px=synth.patch_px or 128)
            for step in plan.steps:
                engine = remover if step.request.mode == "remove" else synth
                result = engine(image, step.request, lesion_mask=mask, bank=bank, spacing_mm=spacing)
                image, mask = result.image, result.mask
            out.append(SyntheticCase(np.asarray(image, np.float32), np.asarray(mask, bool),
                                     bank_patients | {case.patient_id}))
        return out
