"""Classic (non-GAN) augmentation presets of P2 §4.3 and P4 §4.4, masks transformed alike.

One affine warp per sample (flip, rotation, rescale, horizontal shear, shift about the image
centre) done by OpenCV: bilinear for the image, nearest neighbour for the mask (SPEC §1.7).
Then, for P2, Gaussian blur and a per-pixel contrast increase, each with probability 0.5,
on the image only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from lesion_studio.core.errors import ConfigError, MaskError


@dataclass(frozen=True)
class ClassicPreset:
    """Ranges of one augmentation recipe; every value is a ± half-range or a probability."""

    name: str
    rotation_deg: float = 0.0  # U[−r, r]
    scale_range: tuple[float, float] = (1.0, 1.0)
    shear_px: float = 0.0  # horizontal displacement of the top/bottom rows, U[−s, s]
    shift_fraction: float = 0.0  # U[−f, f] of the image size, per axis
    flip_horizontal_p: float = 0.0
    blur_sigma_px: float = 0.0
    blur_p: float = 0.0
    contrast_max: float = 0.0  # per-pixel intensity increase up to this fraction
    contrast_p: float = 0.0


#: P2 §4.3: rotation −25..25°, rescale −15..15 %, horizontal shear −10..10 px, Gaussian blur
#: radius 2 (PIL's radius is the SD) with p = 0.5, per-pixel increase up to 50 % with p = 0.5.
P2_PRESET = ClassicPreset(
    name="P2", rotation_deg=25.0, scale_range=(0.85, 1.15), shear_px=10.0,
    blur_sigma_px=2.0, blur_p=0.5, contrast_max=0.5, contrast_p=0.5,
)
#: P4 §4.4: horizontal flip, rotation −1..1°, rescale 0.9..1.1, shift −5..5 %.
P4_PRESET = ClassicPreset(
    name="P4", rotation_deg=1.0, scale_range=(0.9, 1.1), shift_fraction=0.05, flip_horizontal_p=0.5,
)
PRESETS = {"P2": P2_PRESET, "P4": P4_PRESET}


@dataclass(frozen=True)
class ClassicParams:
    """One drawn augmentation: geometry, then blur and contrast (0 = not applied)."""

    rotation_deg: float = 0.0  # counter-clockwise as displayed
    scale: float = 1.0
    shear_px: float = 0.0
    shift_rc_px: tuple[float, float] = (0.0, 0.0)
    flip_horizontal: bool = False
    blur_sigma_px: float = 0.0
    contrast_max: float = 0.0
    contrast_seed: int = 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shift_rc_px"] = list(self.shift_rc_px)
        return data


def preset(name: str) -> ClassicPreset:
    """A preset by name ("P2" or "P4"); ConfigError otherwise."""
    try:
        return PRESETS[name.upper()]
    except KeyError:
        raise ConfigError(f"unknown augmentation preset {name!r}; expected one of {sorted(PRESETS)}") from None


def sample_params(
    recipe: ClassicPreset, rng: np.random.Generator, shape: tuple[int, int]
) -> ClassicParams:
    """Draw one parameter set from a preset for an image of `shape` (fixed draw order)."""
    rotation = float(rng.uniform(-recipe.rotation_deg, recipe.rotation_deg))
    scale = float(rng.uniform(*recipe.scale_range))
    shear = float(rng.uniform(-recipe.shear_px, recipe.shear_px))
    shift = (
        float(rng.uniform(-recipe.shift_fraction, recipe.shift_fraction) * shape[0]),
        float(rng.uniform(-recipe.shift_fraction, recipe.shift_fraction) * shape[1]),
    )
    flip = bool(rng.random() < recipe.flip_horizontal_p)
    blur = recipe.blur_sigma_px if rng.random() < recipe.blur_p else 0.0
    contrast = recipe.contrast_max if rng.random() < recipe.contrast_p else 0.0
    return ClassicParams(
        rotation_deg=rotation, scale=scale, shear_px=shear, shift_rc_px=shift,
        flip_horizontal=flip, blur_sigma_px=float(blur), contrast_max=float(contrast),
        contrast_seed=int(rng.integers(0, 2**31 - 1)),
    )


def affine_matrix(params: ClassicParams, shape: tuple[int, int]) -> np.ndarray:
    """The 2x3 OpenCV matrix (x = col, y = row) mapping input to output pixels.

    Order: flip left-right, then horizontal shear, scale and rotation about the image centre,
    then the shift. The shear moves the top and bottom rows by ∓/± `shear_px`.
    """
    h, w = int(shape[0]), int(shape[1])
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    flip = np.diag([-1.0 if params.flip_horizontal else 1.0, 1.0, 1.0])
    k = params.shear_px / max(h / 2.0, 1.0)  # P2: shear in pixels at the top/bottom rows
    shear = np.array([[1, k, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    theta = math.radians(params.rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    # counter-clockwise as displayed (rows grow downwards): x' = c·x + s·y, y' = −s·x + c·y
    rotate = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], dtype=np.float64)
    scale = np.diag([params.scale, params.scale, 1.0])
    back = np.array(
        [[1, 0, cx + params.shift_rc_px[1]], [0, 1, cy + params.shift_rc_px[0]], [0, 0, 1]],
        dtype=np.float64,
    )
    return (back @ rotate @ scale @ shear @ flip @ to_centre)[:2]


def apply_params(
    image: np.ndarray, mask: np.ndarray | None, params: ClassicParams
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply one parameter set: `(image float32, mask bool or None)`; inputs are not changed.

    Image: bilinear, border reflected; mask: nearest neighbour, border empty (no lesion is
    invented at the edge). Blur and contrast touch the image only.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) image, got {image.shape}")
    if mask is not None and np.asarray(mask).shape != image.shape:
        raise MaskError(f"mask {np.asarray(mask).shape} differs from image {image.shape}")
    h, w = image.shape
    matrix = affine_matrix(params, (h, w))
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    out_mask = None
    if mask is not None:
        out_mask = cv2.warpAffine(np.asarray(mask).astype(np.uint8), matrix, (w, h),
                                  flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0) > 0
    if params.blur_sigma_px > 0:
        out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma_px, borderType=cv2.BORDER_REFLECT_101)
    if params.contrast_max > 0:
        # P2: "each pixel intensity was increased randomly by up to 50 %", taken relative to
        # the image's minimum so that it also means something for HU (negative values).
        low = float(out.min())
        gain = np.random.default_rng(params.contrast_seed).uniform(0.0, params.contrast_max, out.shape)
        out = (low + (out - low) * (1.0 + gain)).astype(np.float32)
    return out.astype(np.float32), out_mask


def augment(
    image: np.ndarray, mask: np.ndarray | None, recipe: ClassicPreset, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None, ClassicParams]:
    """Draw parameters from a preset and apply them; returns them too for provenance."""
    params = sample_params(recipe, rng, np.asarray(image).shape)
    out, out_mask = apply_params(image, mask, params)
    return out, out_mask, params
