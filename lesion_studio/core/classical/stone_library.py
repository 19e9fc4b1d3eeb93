"""The bundled library of real kidney stones and their paste (P0's task, classical family).

Built by `scripts/build_stone_library.py` from the TEZ_ROI_AUG coronal CT slices of the
training and validation sessions only (`public_datasets.kidney_stone_split`: the held-out
sessions of `benchmarks/stone_realism.py` never enter it). Each stone is stored as its
**contrast over its own background**: the crop around its outline minus the same crop with the
outline Navier-Stokes-filled, clipped at 0 (stones are hyperdense), in the source's 8-bit
display units, with its outline (the Otsu mask grown by the partial-volume rim).

`paste_stone` resamples a stone's contrast onto any footprint and adds it to the patch with a
softened edge: the stone keeps its own profile and the target keeps its own tissue, so no
donor surroundings come along (a square halo, with HU-style replacement). On the held-out
sessions it beats the learned stone inpainter (docs/models.md, "Kidney stones").
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from lesion_studio.core.classical.ct_insertion import pose_view, resample_to_footprint, soft_alpha
from lesion_studio.core.classical.fill import fill_hole
from lesion_studio.core.classical.library_file import check_ragged, read_library_npz
from lesion_studio.core.errors import MaskError
from lesion_studio.core.hashing import sha256_file

RESOURCE_DIR = Path(__file__).resolve().parents[2] / "resources" / "stones"
DEFAULT_LIBRARY_PATH = RESOURCE_DIR / "real_stones.npz"
LIBRARY_FORMAT = "lesion-studio-stone-library"
_KEYS = {"contrast", "outlines", "offsets", "shapes", "names", "sessions", "meta"}
#: The library's units: 8-bit display values of the source's (unknown) CT window.
SOURCE_SPAN = 255.0
#: A paste draws its stone among this many library stones nearest in area to the footprint.
DONOR_POOL = 5
#: Stones smaller than this (px, before the rim) have no interior to keep or compare.
MIN_STONE_AREA_PX = 6
#: A library stone must rise at least this far above its own background (8-bit units): an Otsu
#: mask in a box around a faint or hidden stone can cut out a patch of tissue (one such entry,
#: peak 8, pasted an invisible stone into the first screenshot). 14 of 966 candidates fail it.
MIN_STONE_PEAK = 40.0


def stone_outlines(mask: np.ndarray, min_area_px: int = MIN_STONE_AREA_PX) -> list[np.ndarray]:
    """The stone outlines of a case mask: each 8-connected component of the (Otsu-tight) mask
    of at least `min_area_px`, grown by its partial-volume rim (`stone_mask_with_rim`)."""
    from scipy import ndimage

    from lesion_studio.core.public_datasets import stone_mask_with_rim

    labels, n = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    return [stone_mask_with_rim(labels == k) for k in range(1, n + 1) if int((labels == k).sum()) >= min_area_px]


def stone_contrast(crop: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """A stone's excess over its own background: `crop` minus `crop` with `outline`
    Navier-Stokes-filled, clipped at 0 (float32)."""
    background = fill_hole(crop, outline, method="navier-stokes")
    return np.clip(np.asarray(crop, np.float32) - background, 0.0, None).astype(np.float32)


def is_display_8bit(image_range: tuple[float, float]) -> bool:
    """Whether an image's robust range looks like 8-bit display values, the library's units
    (inside 0-255 and wider than a 0-1 image)."""
    lo, hi = float(image_range[0]), float(image_range[1])
    return lo >= 0.0 and 1.5 < hi <= SOURCE_SPAN


def contrast_scale(image_range: tuple[float, float]) -> float:
    """Library units → image units: 1 for 8-bit display images (like the source), else the
    image's robust span over 255 (an approximation: the source window is not recorded, so a HU
    or 0-1 image gets stones of roughly the same share of its range)."""
    if is_display_8bit(image_range):
        return 1.0
    lo, hi = float(image_range[0]), float(image_range[1])
    return max(hi - lo, 1e-6) / SOURCE_SPAN


def paste_stone(
    background: np.ndarray,
    footprint: np.ndarray,
    contrast: np.ndarray,
    outline: np.ndarray,
    *,
    scale: float = 1.0,
    rotation_deg: float = 0.0,
    flip_vertical: bool = False,
    flip_horizontal: bool = False,
    ceiling: float | None = None,
) -> np.ndarray:
    """`background` with a stone's `contrast` (its `outline` posed, resampled onto the
    footprint's box, times `scale`) added under a softened footprint; values above `ceiling`
    are clipped (an 8-bit image saturates like the source). Float32.

    Pixels saturated in the source are not forced to the ceiling: tried, the held-out
    real-vs-synthetic AUC rose from 0.710 to 0.779 (docs/models.md; one donor seed for all sites)."""
    bg = np.asarray(background, dtype=np.float32)
    footprint = np.asarray(footprint, dtype=bool)
    if bg.shape != footprint.shape:
        raise MaskError(f"patch {bg.shape} and footprint {footprint.shape} differ in shape")
    posed, posed_outline = pose_view(contrast, outline, rotation_deg=rotation_deg,
                                     flip_vertical=flip_vertical, flip_horizontal=flip_horizontal)
    rendered = resample_to_footprint(posed, posed_outline, footprint)
    alpha = soft_alpha(footprint)
    alpha[footprint] = np.maximum(alpha[footprint], 0.5)
    out = bg + alpha * np.float32(scale) * rendered
    if ceiling is not None:
        out = np.minimum(out, np.float32(ceiling))
    return out.astype(np.float32)


class StoneLibrary:
    """Real kidney stones (contrast crops and outlines) with their sources; read-only."""

    def __init__(self, data: dict[str, np.ndarray], path: Path, meta: dict) -> None:
        self.path = path
        self.meta = meta
        self._contrast = data["contrast"]
        self._outlines = data["outlines"]
        self._offsets = data["offsets"].astype(np.int64)
        self._shapes = data["shapes"].astype(np.int64)
        self.names: tuple[str, ...] = tuple(str(s) for s in data["names"])
        self.sessions: tuple[str, ...] = tuple(str(s) for s in data["sessions"])
        self.areas = np.array([int(self.stone(i)[1].sum()) for i in range(len(self.names))], np.int64)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "StoneLibrary":
        """Read a library file (default: the bundled one); MaskError naming the file otherwise."""
        path = Path(path) if path is not None else DEFAULT_LIBRARY_PATH
        data, meta = read_library_npz(path, _KEYS, LIBRARY_FORMAT, "real-stone library",
                                      "scripts/build_stone_library.py")
        check_ragged(data, path, "real-stone library", arrays=("contrast", "outlines"), per_item=("sessions",),
                     ndim=2, min_items=1)
        return cls(data, path, meta)

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def sha256(self) -> str:
        """Hash of the library file, for provenance."""
        return sha256_file(self.path)

    def _slice(self, index: int) -> tuple[slice, tuple[int, ...]]:
        if not 0 <= int(index) < len(self.names):
            raise MaskError(f"stone index {index} out of range (library has {len(self.names)})", self.path)
        i = int(index)
        return slice(int(self._offsets[i]), int(self._offsets[i + 1])), tuple(int(v) for v in self._shapes[i])

    def stone(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """`(contrast float32 in library units, outline bool)` of stone `index`."""
        sl, shape = self._slice(index)
        return self._contrast[sl].reshape(shape).astype(np.float32), self._outlines[sl].reshape(shape) > 0

    def nearest(self, area_px: float, seed: int, pool: int = DONOR_POOL) -> int:
        """One of the `pool` stones nearest in outline area to `area_px`, drawn by `seed`."""
        order = np.argsort(np.abs(self.areas - float(area_px)), kind="stable")[: max(1, int(pool))]
        return int(order[np.random.default_rng(int(seed)).integers(len(order))])


@lru_cache(maxsize=1)
def bundled_stone_library() -> StoneLibrary:
    """The bundled stone library, loaded once per process."""
    return StoneLibrary.load()
