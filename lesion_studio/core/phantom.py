"""Phantom data: deterministic, synthetic radiographs and CT slices with exact lesion masks.

For tests and tutorials only — never patient data, and every file says so ("phantom" in each
file name, and in dataset.json's description). Three kinds:
- `chest`: a PA chest radiograph (body, lung fields, heart, spine, ribs) with lung nodules;
  location map = lung fields (P3's setting);
- `kub`: a plain abdominal radiograph (spine, pelvis, bowel gas, kidneys) with urinary
  stones; location map = kidneys, ureters and bladder (P0 §IV-A);
- `ct`: an abdominal CT slice in Hounsfield units (fat, muscle, liver, kidneys, vertebra)
  with kidney stones; location map = kidneys.
Radiographs are unitless 12-bit values (larger = denser), stored as 16-bit PNG; CT is int16 HU
stored as NIfTI with its spacing. Lesions have a controlled diameter (mm), contrast and shape
(an ellipse with a smooth radial perturbation), and the mask is exactly the pixels the lesion
changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from lesion_studio.core.dataset import IMAGE_DIR, LOCATION_DIR, MASK_DIR, write_dataset_json
from lesion_studio.core.errors import ConfigError

PHANTOM_KINDS = ("chest", "kub", "ct")
DEFAULT_SIZE_PX = 256
#: Largest phantom side in pixels (a 4096² case needs a few hundred MB while it is drawn).
MAX_SIZE_PX = 4096
PHANTOM_VERSION = 1
#: Field of view per kind (mm across the square image): PA chest and KUB detectors are about
#: 35-43 cm, an abdominal CT reconstruction about 38 cm.
FIELD_OF_VIEW_MM = {"chest": 360.0, "kub": 360.0, "ct": 380.0}
#: Lesion diameters (mm) and contrasts per kind: nodules 6-30 mm (NODE21-like), stones 3-12 mm.
LESION_DIAMETER_MM = {"chest": (8.0, 30.0), "kub": (4.0, 12.0), "ct": (3.0, 10.0)}
LESION_CONTRAST = {"chest": (120.0, 320.0), "kub": (250.0, 600.0), "ct": (300.0, 900.0)}
LESIONS_PER_CASE = {"chest": (1, 2), "kub": (1, 3), "ct": (1, 2)}
#: Every third case has no lesion.
LESION_FREE_EVERY = 3


@dataclass(frozen=True)
class PhantomLesion:
    """A lesion as drawn: centre (px), diameter (mm), added intensity, shape parameters."""

    centre_rc: tuple[float, float]
    diameter_mm: float
    contrast: float
    elongation: float
    angle_rad: float

    def to_dict(self) -> dict:
        return {
            "centre_rc": [round(self.centre_rc[0], 3), round(self.centre_rc[1], 3)],
            "diameter_mm": round(self.diameter_mm, 3),
            "contrast": round(self.contrast, 3),
            "elongation": round(self.elongation, 4),
            "angle_rad": round(self.angle_rad, 4),
        }


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """One phantom image with its exact lesion mask, location map and lesions."""

    image: np.ndarray  # (H, W) float32: unitless for radiographs, HU for CT
    lesion_mask: np.ndarray  # (H, W) bool
    location_map: np.ndarray  # (H, W) bool
    spacing_mm: tuple[float, float]
    lesions: tuple[PhantomLesion, ...]


# -- shapes on a normalized grid ---------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates in [-1, 1] (pixel centres)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return t[:, None], t[None, :]


def _ellipse(y, x, cy, cx, ry, rx, angle=0.0) -> np.ndarray:
    """Inside test of an ellipse on the normalized grid (bool)."""
    c, s = math.cos(angle), math.sin(angle)
    dy, dx = y - cy, x - cx
    u = (dx * c + dy * s) / rx
    v = (-dx * s + dy * c) / ry
    return (u * u + v * v) <= 1.0


def _soft(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """A bool region blurred into a smooth 0..1 weight (soft anatomy edges)."""
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma_px)


def _smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-SD correlated noise (slow anatomical variation)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma_px)
    return (field - field.mean()) / (field.std() + 1e-6)


# -- lesions ----------------------------------------------------------------------------------
def lesion_shape(
    size: int, centre_rc: tuple[float, float], radius_px: float, elongation: float,
    angle_rad: float, harmonics: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A lesion mask and its normalized radius field `rho` (<= 1 inside) on a `size`² grid.

    Outline: an ellipse (axes `radius·elongation` and `radius/elongation`) whose radius is
    modulated by a few smooth harmonics, so shapes are lobulated but still compact.
    """
    rows = np.arange(size, dtype=np.float32)[:, None] + 0.5 - centre_rc[0]
    cols = np.arange(size, dtype=np.float32)[None, :] + 0.5 - centre_rc[1]
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    u = (cols * c + rows * s) / (radius_px * elongation)
    v = (-cols * s + rows * c) * elongation / radius_px
    theta = np.arctan2(v, u)
    wobble = np.ones_like(theta)
    for k, (amp, phase) in enumerate(harmonics, start=2):
        wobble += amp * np.cos(k * theta + phase)
    rho = np.sqrt(u * u + v * v) / wobble
    return rho <= 1.0, rho


def _add_lesions(
    rng: np.random.Generator, image: np.ndarray, location: np.ndarray, kind: str,
    spacing_mm: float, count: int,
) -> tuple[np.ndarray, tuple[PhantomLesion, ...]]:
    size = image.shape[0]
    mask = np.zeros(image.shape, dtype=bool)
    lesions = []
    d_low, d_high = LESION_DIAMETER_MM[kind]
    c_low, c_high = LESION_CONTRAST[kind]
    for _ in range(count):
        diameter_mm = max(float(rng.uniform(d_low, d_high)), 3.0 * spacing_mm)  # >= 3 px
        radius_px = diameter_mm / spacing_mm / 2.0
        allowed = location & ~ndimage.binary_dilation(mask, iterations=int(radius_px) + 3)
        allowed = ndimage.binary_erosion(allowed, iterations=max(int(radius_px * 0.5), 1))
        candidates = np.argwhere(allowed)
        if candidates.size == 0:
            break
        r, c = candidates[int(rng.integers(len(candidates)))]
        centre = (float(r) + 0.5, float(c) + 0.5)
        elongation = float(rng.uniform(1.0, 1.35))
        angle = float(rng.uniform(0, math.pi))
        harmonics = np.stack([rng.uniform(0.0, 0.08, 3), rng.uniform(0, 2 * math.pi, 3)], axis=1)
        shape, rho = lesion_shape(size, centre, radius_px, elongation, angle, harmonics)
        shape &= ~mask
        if not shape.any():
            continue
        contrast = float(rng.uniform(c_low, c_high))
        # a dense centre fading to 60 % at the edge: the lesion changes exactly its mask pixels
        profile = contrast * (0.6 + 0.4 * np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0)))
        image += np.where(shape, profile, 0.0).astype(np.float32)
        mask |= shape
        lesions.append(PhantomLesion(centre, diameter_mm, contrast, elongation, angle))
    return mask, tuple(lesions)


# -- backgrounds ------------------------------------------------------------------------------
def _chest_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = _grid(size)
    sigma = size / 128.0
    jitter = lambda s: float(rng.uniform(-s, s))  # noqa: E731 - tiny local helper
    body = _ellipse(y, x, 0.05, 0.0, 1.05, 0.86 + jitter(0.04))
    lung_r = _ellipse(y, x, -0.12 + jitter(0.03), -0.40, 0.62 + jitter(0.04), 0.27 + jitter(0.02), 0.08)
    lung_l = _ellipse(y, x, -0.10 + jitter(0.03), 0.40, 0.60 + jitter(0.04), 0.26 + jitter(0.02), -0.08)
    heart = _ellipse(y, x, 0.25, 0.10 + jitter(0.03), 0.30, 0.32 + jitter(0.03), 0.3)
    lungs = (lung_r | lung_l) & ~heart
    spine = (np.abs(x) < 0.09) & body
    image = 350.0 + 1500.0 * _soft(body, 3 * sigma)
    image -= 950.0 * _soft(lungs, 2 * sigma)
    image += 450.0 * _soft(heart, 3 * sigma) + 300.0 * _soft(spine, sigma)
    # ribs: curved bands sweeping down and out from the spine on each side
    ribs = np.zeros((size, size), dtype=bool)
    for k in range(10):
        y0 = -0.78 + 0.16 * k + jitter(0.01)
        for side in (-1.0, 1.0):
            xs = side * x
            curve = y0 + 0.9 * (xs - 0.05) ** 2 - 0.12 * xs
            band = (np.abs(y - curve) < 0.028) & (xs > 0.05) & (xs < 0.85)
            ribs |= band
    ribs &= body
    image += 260.0 * _soft(ribs, 0.8 * sigma) * (0.25 + 0.75 * _soft(lungs, 4 * sigma))
    image += 60.0 * _smooth_noise(rng, size, 12 * sigma)
    location = ndimage.binary_erosion(lungs, iterations=max(int(3 * sigma), 1))
    return image.astype(np.float32), location


def _kub_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = _grid(size)
    sigma = size / 128.0
    jitter = lambda s: float(rng.uniform(-s, s))  # noqa: E731
    body = _ellipse(y, x, 0.0, 0.0, 1.2, 0.92 + jitter(0.03))
    image = 400.0 + 1300.0 * _soft(body, 3 * sigma)
    # lumbar spine: vertebral bodies with darker discs
    spine_x = jitter(0.02)
    vertebrae = (np.abs(x - spine_x) < 0.10) & (np.mod(y + 1.0 + jitter(0.05), 0.24) > 0.04) & (y < 0.55)
    image += 420.0 * _soft(vertebrae, 0.7 * sigma)
    psoas = (_ellipse(y, x, 0.1, -0.22, 0.6, 0.09, 0.25) | _ellipse(y, x, 0.1, 0.22, 0.6, 0.09, -0.25))
    image += 90.0 * _soft(psoas, 2 * sigma)
    pelvis = (_ellipse(y, x, 0.85, -0.45, 0.35, 0.30) ^ _ellipse(y, x, 0.85, -0.45, 0.27, 0.22)) | (
        _ellipse(y, x, 0.85, 0.45, 0.35, 0.30) ^ _ellipse(y, x, 0.85, 0.45, 0.27, 0.22))
    image += 380.0 * _soft(pelvis & body, sigma)
    gas = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(5, 10))):
        gas |= _ellipse(y, x, jitter(0.6) + 0.1, jitter(0.7), 0.05 + abs(jitter(0.06)),
                        0.06 + abs(jitter(0.08)), jitter(1.5))
    image -= 350.0 * _soft(gas & body, 1.5 * sigma)
    kidney_r = _ellipse(y, x, -0.38 + jitter(0.04), -0.36, 0.24, 0.12, 0.25)
    kidney_l = _ellipse(y, x, -0.42 + jitter(0.04), 0.36, 0.24, 0.12, -0.25)
    kidneys = kidney_r | kidney_l
    image += 110.0 * _soft(kidneys, 1.5 * sigma)
    bladder = _ellipse(y, x, 0.78, 0.0, 0.14, 0.2)
    image += 70.0 * _soft(bladder, 2 * sigma)
    ureters = np.zeros((size, size), dtype=bool)
    for side in (-1.0, 1.0):
        # from the renal pelvis (inner lower pole) down to the bladder
        t = np.linspace(0.0, 1.0, 4 * size)
        ys = -0.28 + t * (0.72 + 0.28)
        xs = side * (0.27 - 0.12 * t + 0.05 * np.sin(math.pi * t))
        rr = np.clip(((ys + 1) / 2 * size).astype(int), 0, size - 1)
        cc = np.clip(((xs + 1) / 2 * size).astype(int), 0, size - 1)
        ureters[rr, cc] = True
    ureters = ndimage.binary_dilation(ureters, iterations=max(int(1.5 * sigma), 1))
    image += 60.0 * _smooth_noise(rng, size, 10 * sigma)
    location = (kidneys | ureters | bladder) & body
    return image.astype(np.float32), location


def _ct_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = _grid(size)
    sigma = size / 128.0
    jitter = lambda s: float(rng.uniform(-s, s))  # noqa: E731
    body = _ellipse(y, x, 0.02, 0.0, 0.62 + jitter(0.03), 0.88 + jitter(0.03))
    muscle = _ellipse(y, x, 0.04, 0.0, 0.52, 0.76)
    hu = np.full((size, size), -1000.0, dtype=np.float32)  # air
    hu[body] = -100.0  # subcutaneous fat
    hu[muscle] = 30.0  # abdominal cavity / soft tissue
    liver = _ellipse(y, x, -0.12, -0.38 + jitter(0.03), 0.32, 0.34, 0.3) & muscle
    hu[liver] = 60.0
    fat_pockets = _smooth_noise(rng, size, 4 * sigma) > 1.0
    hu[fat_pockets & muscle & ~liver] = -90.0
    kidney_r = _ellipse(y, x, 0.22, -0.34 + jitter(0.02), 0.13, 0.09, 0.5) & muscle
    kidney_l = _ellipse(y, x, 0.22, 0.34 + jitter(0.02), 0.13, 0.09, -0.5) & muscle
    kidneys = kidney_r | kidney_l
    hu[kidneys] = 35.0
    aorta = _ellipse(y, x, 0.12, 0.06, 0.05, 0.05)
    hu[aorta] = 45.0
    vertebra = _ellipse(y, x, 0.32, 0.0, 0.11, 0.12)
    hu[vertebra] = 700.0
    hu[_ellipse(y, x, 0.32, 0.0, 0.085, 0.095)] = 250.0  # cancellous bone
    hu[_ellipse(y, x, 0.50, 0.0, 0.05, 0.04)] = 600.0  # spinous process
    bowel_gas = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(2, 5))):
        bowel_gas |= _ellipse(y, x, jitter(0.2) - 0.1, jitter(0.2) + 0.15, 0.03 + abs(jitter(0.03)),
                              0.04 + abs(jitter(0.04)))
    hu[bowel_gas & muscle & ~liver & ~kidneys] = -900.0
    hu = ndimage.gaussian_filter(hu, 0.6 * sigma)  # partial volume at the edges
    hu += 8.0 * _smooth_noise(rng, size, 6 * sigma) * (hu > -500)
    location = ndimage.binary_erosion(kidneys, iterations=max(int(sigma), 1))
    return hu.astype(np.float32), location


# -- noise ------------------------------------------------------------------------------------
def _radiograph_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Quantum-like noise (SD grows with the square root of the signal) plus fine grain."""
    signal = np.clip(image, 1.0, None)
    noise = rng.standard_normal(image.shape).astype(np.float32) * (0.9 * np.sqrt(signal))
    grain = ndimage.gaussian_filter(rng.standard_normal(image.shape).astype(np.float32), 0.7) * 12.0
    return np.clip(image + noise + grain, 0.0, 4095.0).astype(np.float32)


def _ct_noise(rng: np.random.Generator, hu: np.ndarray) -> np.ndarray:
    """CT noise: correlated (filtered) Gaussian, SD about 12 HU."""
    noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), 0.8)
    noise *= 12.0 / (noise.std() + 1e-6)
    return np.clip(hu + noise, -1024.0, 3071.0).astype(np.float32)


# -- one case and a whole dataset ---------------------------------------------------------------
def make_phantom_case(
    kind: str, index: int, *, seed: int = 0, size_px: int = DEFAULT_SIZE_PX, with_lesions: bool = True
) -> PhantomCase:
    """One deterministic phantom image: the same `(kind, index, seed, size_px)` gives the same case.

    Anatomy, lesions and noise come from separate random streams, so `with_lesions=False`
    gives the very same image minus the lesions (which is how the masks are checked exact).
    """
    if kind not in PHANTOM_KINDS:
        raise ConfigError(f"unknown phantom kind {kind!r}; expected one of {PHANTOM_KINDS}")
    if not 64 <= size_px <= MAX_SIZE_PX:
        raise ConfigError(f"phantom size must be 64..{MAX_SIZE_PX} px, got {size_px}")
    root = np.random.SeedSequence([int(seed), int(index), PHANTOM_KINDS.index(kind)])
    # separate streams, so the same case without lesions has the same anatomy and noise
    rng_anatomy, rng_lesions, rng_noise = (np.random.default_rng(s) for s in root.spawn(3))
    spacing = FIELD_OF_VIEW_MM[kind] / size_px
    background = {"chest": _chest_background, "kub": _kub_background, "ct": _ct_background}[kind]
    image, location = background(rng_anatomy, size_px)
    count = 0
    if with_lesions:
        low, high = LESIONS_PER_CASE[kind]
        count = int(rng_lesions.integers(low, high + 1))
    mask, lesions = _add_lesions(rng_lesions, image, location, kind, spacing, count)
    image = _ct_noise(rng_noise, image) if kind == "ct" else _radiograph_noise(rng_noise, image)
    return PhantomCase(image=image, lesion_mask=mask, location_map=location,
                       spacing_mm=(spacing, spacing), lesions=lesions)


def _splits_by_patient(n_patients: int) -> list[str]:
    """About 70/15/15 % of patients in train/val/test, at least one each from 3 patients."""
    if n_patients < 3:
        return ["train"] * n_patients
    n_test = max(1, round(0.15 * n_patients))
    n_val = max(1, round(0.15 * n_patients))
    n_train = n_patients - n_val - n_test
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise ConfigError("PNG encoding failed", path)
    path.write_bytes(data.tobytes())


def _write_ct(path: Path, hu: np.ndarray, spacing_mm: tuple[float, float]) -> None:
    import SimpleITK as sitk  # a project dependency; only CT phantoms need it

    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing((float(spacing_mm[1]), float(spacing_mm[0])))  # ITK order: x (cols), y (rows)
    image.SetMetaData("descrip", "lesion-studio phantom (synthetic, not patient data)")
    sitk.WriteImage(image, str(path), True)


def generate_phantom_dataset(
    out_dir: str | Path, kind: str, n: int, *, seed: int = 0, size_px: int = DEFAULT_SIZE_PX
) -> Path:
    """Write `n` phantom cases as a lesion-studio dataset in `out_dir`; returns dataset.json.

    Every third case is lesion-free; two consecutive cases share a patient; patients are
    split about 70/15/15 into train/val/test. The same arguments give byte-identical files.
    """
    if kind not in PHANTOM_KINDS:
        raise ConfigError(f"unknown phantom kind {kind!r}; expected one of {PHANTOM_KINDS}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    out = Path(out_dir)
    for folder in (IMAGE_DIR, MASK_DIR, LOCATION_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)
    n_patients = (n + 1) // 2
    splits = _splits_by_patient(n_patients)
    records = []
    for i in range(n):
        lesion_free = (i % LESION_FREE_EVERY) == LESION_FREE_EVERY - 1
        case = make_phantom_case(kind, i, seed=seed, size_px=size_px, with_lesions=not lesion_free)
        stem = f"phantom_{kind}_{i:04d}"
        if kind == "ct":
            image_rel = f"{IMAGE_DIR}/{stem}.nii.gz"
            _write_ct(out / image_rel, case.image, case.spacing_mm)
        else:
            image_rel = f"{IMAGE_DIR}/{stem}.png"
            _write_png(out / image_rel, np.round(case.image).astype(np.uint16))
        mask_rel = f"{MASK_DIR}/{stem}_mask.png"
        _write_png(out / mask_rel, case.lesion_mask.astype(np.uint8) * 255)
        loc_rel = f"{LOCATION_DIR}/{stem}_location.png"
        _write_png(out / loc_rel, case.location_map.astype(np.uint8) * 255)
        patient = i // 2
        records.append({
            "id": stem,
            "image": image_rel,
            "mask": mask_rel,
            "location_map": loc_rel,
            "patient_id": f"phantom_patient_{patient:04d}",
            "has_lesion": bool(case.lesion_mask.any()),
            "split": splits[patient],
            "phantom_lesions": [lesion.to_dict() for lesion in case.lesions],
        })
    spacing = FIELD_OF_VIEW_MM[kind] / size_px
    return write_dataset_json(
        out, records,
        description=(
            f"lesion-studio PHANTOM dataset: synthetic {kind} images for tests and tutorials, "
            "not patient data"
        ),
        spacing_mm=(spacing, spacing),
        modality="CT" if kind == "ct" else "CR" if kind == "chest" else "DX",
        extra={"phantom": {"kind": kind, "n": n, "seed": seed, "size_px": size_px,
                           "generator_version": PHANTOM_VERSION}},
    )
