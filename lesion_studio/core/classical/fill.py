"""Classical hole filling (SPEC §4.1): OpenCV TELEA / Navier-Stokes inpainting, a ring mean and
a texture-preserving fill ("texture", see `_texture_fill`).

Runs on the image's own values (HU, 8-bit, 12/16-bit, any float units): the crop around the
hole is mapped linearly onto 0..65535 uint16 for `cv2.inpaint` (which misbehaves on float32
data in small ranges such as [0, 1]) and mapped back, so the quantisation error is at most
1/65535 of the crop's value range. Pixels outside the hole are returned bit-identical.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from skimage.restoration import inpaint_biharmonic

from lesion_studio.core.errors import ConfigError, MaskError

FILL_METHODS = ("telea", "navier-stokes", "ring-mean", "texture")
_CV_FLAGS = {"telea": cv2.INPAINT_TELEA, "navier-stokes": cv2.INPAINT_NS}
_U16_MAX = 65535.0
#: Width of the ring of known pixels used by the ring mean (px).
RING_WIDTH_PX = 2


def ring_around(hole: np.ndarray, width_px: int = RING_WIDTH_PX, gap_px: int = 0) -> np.ndarray:
    """The pixels within `gap_px < distance <= gap_px + width_px` outside a bool mask."""
    hole = np.asarray(hole, dtype=bool)
    outside = ndimage.distance_transform_edt(~hole)
    return (outside > gap_px) & (outside <= gap_px + width_px)


def _check(pixels: np.ndarray, hole: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method not in FILL_METHODS:
        raise ConfigError(f"unknown fill method {method!r}; expected one of {FILL_METHODS}")
    pixels = np.asarray(pixels)
    hole = np.asarray(hole, dtype=bool)
    if pixels.ndim != 2 or pixels.shape != hole.shape:
        raise MaskError(f"image {pixels.shape} and hole {hole.shape} must be the same 2D shape")
    return pixels, hole


def fill_hole(
    pixels: np.ndarray, hole: np.ndarray, method: str = "telea", radius_px: float = 3.0
) -> np.ndarray:
    """Fill `hole` (bool, same shape) of a 2D image from its surroundings; float32 out.

    `method` is "telea" or "navier-stokes" (`cv2.inpaint`, neighbourhood `radius_px`), or
    "ring-mean" (the mean of a 2-px ring just outside the hole: the trivial floor), or
    "texture" (a smooth biharmonic base plus the fine texture of a nearby donor region, blended
    seamlessly: see `_texture_fill`; `radius_px` is not used). Only hole pixels change;
    everything else equals `pixels` converted to float32.
    """
    pixels, hole = _check(pixels, hole, method)
    out = pixels.astype(np.float32, copy=True)
    if not hole.any():
        return out
    known = ~hole
    if not known.any():
        raise MaskError("the hole covers the whole image: nothing to fill it from")
    if method == "ring-mean":
        ring = ring_around(hole) & known
        out[hole] = np.float32(out[ring].mean())
        return out
    if method == "texture":
        _texture_fill(out, hole)
        return out

    # a local crop: the hole's box plus enough context for the inpainting neighbourhood
    pad = int(math.ceil(radius_px)) + 4
    rows = np.flatnonzero(hole.any(axis=1))
    cols = np.flatnonzero(hole.any(axis=0))
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, hole.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, hole.shape[1])
    crop = out[r0:r1, c0:c1].astype(np.float64)
    crop_hole = hole[r0:r1, c0:c1]
    crop_known = ~crop_hole
    if not crop_known.any():
        crop_known = known[r0:r1, c0:c1]
    finite = crop_known & np.isfinite(crop)
    lo = float(crop[finite].min()) if finite.any() else 0.0
    hi = float(crop[finite].max()) if finite.any() else 0.0
    span = hi - lo if hi > lo else 1.0
    scaled = np.where(finite, (crop - lo) / span * _U16_MAX, 0.0)
    u16 = np.clip(np.rint(scaled), 0, _U16_MAX).astype(np.uint16)
    filled = cv2.inpaint(u16, crop_hole.astype(np.uint8), float(radius_px), _CV_FLAGS[method])
    values = filled.astype(np.float64) / _U16_MAX * span + lo
    region = out[r0:r1, c0:c1]
    region[crop_hole] = values[crop_hole].astype(np.float32)
    return out


# -- texture-preserving fill ------------------------------------------------------------------
#: Width of the ring just outside the hole on which donor candidates are compared (px).
TEXTURE_RING_PX = 3
#: The low-frequency base is solved on a grid coarsened so that the hole spans about this
#: many samples (biharmonic inpainting is quadratic-ish in the hole's area).
TEXTURE_BASE_SAMPLES = 36
#: The texture band: everything finer than a Gaussian of sigma = hole extent / this (at
#: least 1.5 px) comes from the donor, so mid-scale lung markings are restored too.
TEXTURE_SCALE_DIVISOR = 10.0
#: Donor candidates: 16 directions x these distances (in hole extents, plus the ring).
_DONOR_DIRECTIONS = 16
_DONOR_DISTANCES = (0.55, 0.8, 1.05, 1.4, 1.8)
#: The texture's gain is the ring's high-pass std over the donor's, clipped to this range.
_GAIN_RANGE = (0.7, 1.3)
#: Overall texture amplitude relative to the ring's: below 1 because independent texture
#: adds its own variance to the error (0.75: ~0.7 of the ring's texture, within ~1.5-2 dB of
#: the smooth fills' masked PSNR on small CT holes).
TEXTURE_GAIN = 0.75
#: Donor high-pass values beyond this many ring stds are soft-clipped (tanh), so
#: that sharp edges in the donor (a rib border, a wire) are not copied into the hole.
_SOFT_CLIP = 3.5


def _normalized_blur(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of `values` over the pixels where `weight` is 1 only."""
    num = ndimage.gaussian_filter(values * weight, sigma, mode="nearest", truncate=3.0)
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest", truncate=3.0)
    return num / np.maximum(den, 1e-12)


def _harmonic_correction(boundary: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The harmonic function (Laplace, 4-neighbour) on `hole` that equals `boundary` on the
    known pixels next to it (Neumann at the array's border); zero outside the hole."""
    shape = hole.shape
    index = np.full(shape, -1, np.int64)
    rr, cc = np.nonzero(hole)
    n = rr.size
    index[rr, cc] = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros(n)
    rows, cols = [], []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nr, nc = rr + dr, cc + dc
        inside = (nr >= 0) & (nr < shape[0]) & (nc >= 0) & (nc < shape[1])
        diag += inside
        nr, nc, me = nr[inside], nc[inside], np.flatnonzero(inside)
        other = index[nr, nc]
        unknown = other >= 0
        rows.append(me[unknown])
        cols.append(other[unknown])
        np.add.at(rhs, me[~unknown], boundary[nr[~unknown], nc[~unknown]])
    rows_all = np.concatenate(rows + [np.arange(n)])
    cols_all = np.concatenate(cols + [np.arange(n)])
    data = np.concatenate([-np.ones(sum(r.size for r in rows)), diag])
    matrix = sparse.csc_matrix((data, (rows_all, cols_all)), shape=(n, n))
    out = np.zeros(shape)
    out[rr, cc] = spsolve(matrix, rhs)
    return out


def _texture_fill(out: np.ndarray, hole: np.ndarray) -> None:
    """Fill `hole` of `out` (float32, changed in place) with a smooth base plus real texture.

    1. Split the surroundings into a low-pass L (Gaussian of sigma ~ half the coarsening
       factor, normalised over the known pixels only) and a high-pass H = image - L.
    2. Base: biharmonic inpainting of L on a grid coarsened so that the hole spans ~36
       samples (fast; C1-smooth continuation of gradients and edges, no radial streaks),
       upsampled by cubic interpolation.
    3. Texture: H copied from a donor region of the hole's own shape nearby (16 directions x
       5 distances, never touching the hole) — the one whose 3-px ring of H best matches the
       hole's ring, whose texture energy best matches the ring's and whose low-pass level is
       closest to the base's (similar tissue), preferring near donors — scaled to the ring's
       high-pass std (gain 0.7-1.3) and soft-clipped at 3.5 of those stds, so that
       sharp donor edges (a rib border, a wire) are not copied.
    4. Seam: Poisson blending — base + texture plus the harmonic function that takes the
       mismatch on the hole's boundary, so the fill meets the image continuously.
    Deterministic (no randomness); units-agnostic (linear in the image values).
    """
    shape = hole.shape
    rows = np.flatnonzero(hole.any(axis=1))
    cols = np.flatnonzero(hole.any(axis=0))
    extent = int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    factor = max(1, int(round(extent / TEXTURE_BASE_SAMPLES)))
    sigma = max(1.5, 0.6 * factor, extent / TEXTURE_SCALE_DIVISOR)
    ring_px = TEXTURE_RING_PX
    pad = int(math.ceil(max(_DONOR_DISTANCES) * extent)) + extent // 2 + ring_px + 2
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, shape[1])
    crop = out[r0:r1, c0:c1].astype(np.float64)
    h = hole[r0:r1, c0:c1]
    finite = np.isfinite(crop)
    known = ~h & finite
    if not known.any():
        raise MaskError("the hole covers the whole image: nothing to fill it from")
    crop = np.where(known, crop, 0.0)
    weight = known.astype(np.float64)
    low = _normalized_blur(crop, weight, sigma)
    high = np.where(known, crop - low, 0.0)
    target = ~known  # everything to fill (the hole, plus any non-finite pixels)

    # 2. the base: biharmonic fill of the low-pass on a coarse grid
    if factor == 1:
        base = inpaint_biharmonic(np.where(target, 0.0, low), target)
    else:
        grow = ndimage.binary_dilation(target, iterations=factor)
        off = factor // 2
        coarse = low[off::factor, off::factor]
        coarse_hole = grow[off::factor, off::factor]
        filled = inpaint_biharmonic(np.where(coarse_hole, 0.0, coarse), coarse_hole)
        band = ndimage.binary_dilation(target, iterations=2)
        br, bc = np.nonzero(band)
        base = low.copy()
        base[br, bc] = ndimage.map_coordinates(
            filled, [(br - off) / factor, (bc - off) / factor], order=3, mode="nearest")

    # 3. the texture: H of the best donor region of the hole's shape
    dist_out = ndimage.distance_transform_edt(~target)
    ring = (dist_out > 0) & (dist_out <= ring_px)
    support = target | ring
    sr, sc = np.nonzero(support)
    ring_at = ring[sr, sc]
    hole_at = ~ring_at
    texture = np.zeros(crop.shape)
    ring_h = high[ring]
    ring_std = float(ring_h.std()) if ring_h.size > 1 else 0.0
    forbidden = ndimage.binary_dilation(support, iterations=1) | ~known
    best = None
    base_level = float(base[target].mean())
    level_scale = max(float(low[ring].std()), 2.0 * ring_std, 1e-12)
    for k in range(_DONOR_DIRECTIONS):
        angle = 2.0 * math.pi * k / _DONOR_DIRECTIONS
        for j, scale in enumerate(_DONOR_DISTANCES):
            rho = scale * extent + ring_px + 1
            dr, dc = int(round(rho * math.sin(angle))), int(round(rho * math.cos(angle)))
            tr, tc = sr + dr, sc + dc
            if tr.min() < 0 or tc.min() < 0 or tr.max() >= crop.shape[0] or tc.max() >= crop.shape[1]:
                continue
            if forbidden[tr, tc].any():
                continue
            donor = high[tr, tc]
            donor_std = float(donor[hole_at].std())
            if ring_std > 0 and donor_std > 0:
                match = float(np.mean((donor[ring_at] - ring_h) ** 2)) / (2.0 * ring_std ** 2)
                energy = math.log(donor_std / ring_std) ** 2
            else:
                match, energy = 0.0, 0.0
            # similar tissue: the donor's low-pass level close to the base's (in ring stds of L)
            level = (float(low[tr, tc][hole_at].mean()) - base_level) / level_scale
            score = match + 2.0 * energy + 0.25 * level ** 2 + 0.05 * j
            if best is None or score < best[0]:
                best = (score, tr, tc, donor_std)
    if best is not None and best[3] > 0 and ring_std > 0:
        _, tr, tc, donor_std = best
        gain = TEXTURE_GAIN * min(max(ring_std / donor_std, _GAIN_RANGE[0]), _GAIN_RANGE[1])
        limit = _SOFT_CLIP * ring_std
        texture[sr, sc] = limit * np.tanh(gain * high[tr, tc] / limit)

    # 4. Poisson seam: the harmonic function that makes base + texture meet the image
    guide = base + texture
    mismatch = np.where(known, crop - guide, 0.0)
    result = guide + _harmonic_correction(mismatch, target)
    region = out[r0:r1, c0:c1]
    region[h] = result[h].astype(np.float32)
