"""The bundled library of real CT lung nodules (LIDC-IDRI via LUNA16 / NODE21), 1 mm voxels.

Built by `scripts/build_nodule_library.py` from the `library` split only (the held-out scans
are listed in `resources/nodules/split.json`). Each nodule is a 3D HU crop `(z, y, x)` and its
mask. Two 2D views feed the classical inserters:

- `axial(i)`: the axial slice where the mask is largest (CT insertion, SPEC §4.2);
- `projected(i)`: a DRR-style template along the anterior-posterior axis (y), SPEC §4.3, for
  frontal radiographs. Rows are flipped so the patient's head is up: LUNA16 volumes are read
  with z increasing towards the head (LPS +z = superior), so row 0 of the view is the most
  superior slice. Columns keep x (patient's right on the viewer's left, as in a PA film).

`shape_bank(view)` gives the view's masks as a `MaskBank` with entry i = nodule i.
"""

from __future__ import annotations

import json
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesion_studio.core.classical.library_file import check_ragged, read_library_npz
from lesion_studio.core.errors import MaskError
from lesion_studio.core.hashing import sha256_file
from lesion_studio.core.mask_bank import MaskBank

RESOURCE_DIR = Path(__file__).resolve().parents[2] / "resources" / "nodules"
DEFAULT_LIBRARY_PATH = RESOURCE_DIR / "real_nodules.npz"
SPLIT_PATH = RESOURCE_DIR / "split.json"
LIBRARY_FORMAT = "lesion-studio-nodule-library"
VIEWS = ("axial", "projected")
_KEYS = {"images", "masks", "offsets", "shapes", "names", "series_uids", "diameter_mm", "meta"}

#: SPEC §4.3 (NODE21 baseline `generate_2d`): HU window, shift, scale and β.
DRR_HU_WINDOW = (-500.0, 400.0)
DRR_HU_SHIFT = 1024.0
DRR_SCALE = 1000.0
DRR_BETA = 0.85


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a 2D mask with its holes filled (bool).

    One nodule must give exactly one shape, so that bank entry i stays nodule i.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return mask.copy()
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)


def drr_template(volume_hu: np.ndarray, mask: np.ndarray, axis: int = 1) -> np.ndarray:
    """SPEC §4.3 template: voxels outside the mask set to the crop minimum, HU clipped to
    [−500, 400], +1024, /1000, ×0.85, clipped at 1; mean of exp(value) along `axis`."""
    hu = np.asarray(volume_hu, dtype=np.float64).copy()
    hu[~np.asarray(mask, dtype=bool)] = hu.min()
    value = (np.clip(hu, *DRR_HU_WINDOW) + DRR_HU_SHIFT) / DRR_SCALE * DRR_BETA
    return np.exp(np.minimum(value, 1.0)).mean(axis=axis).astype(np.float32)


#: Shape-bank masks are upsampled to about this many pixels before they are normalised: a
#: 1 mm nodule mask is 5-20 px wide, and scaling it to a 100 px lesion by nearest neighbour
#: gives staircase outlines.
SMOOTH_OUTLINE_PX = 96
#: The projected outline: nodule thickness (blurred by this many 1 mm voxels) at least this
#: share of its maximum.
PROJECTED_OUTLINE_SIGMA = 0.7
PROJECTED_OUTLINE_LEVEL = 0.2
SMOOTH_OUTLINE_SIGMA = 1.0


def smooth_outline(mask: np.ndarray, target_px: int = SMOOTH_OUTLINE_PX) -> tuple[np.ndarray, float]:
    """`(mask upsampled with a smooth outline, factor k)`: the coverage map is blurred by a
    fraction of a source pixel, enlarged bicubically and thresholded at 0.5 (so its new pixels
    are 1/k mm)."""
    import cv2

    mask = np.pad(np.asarray(mask, dtype=bool), 2)
    k = max(1.0, float(target_px) / max(mask.shape))
    soft = ndimage.gaussian_filter(mask.astype(np.float32), SMOOTH_OUTLINE_SIGMA)
    size = (max(1, round(mask.shape[1] * k)), max(1, round(mask.shape[0] * k)))
    big = cv2.resize(soft, size, interpolation=cv2.INTER_CUBIC) >= 0.5
    if not big.any():
        return clean_mask(mask), 1.0
    return clean_mask(big), k


def smooth_component(component: np.ndarray, hu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, float]:
    """`(mask, hu, k)`: one lesion component cropped to its box (+2 px), upsampled k× with a
    smooth outline (`smooth_outline`), and `hu` (same frame as `component`) resized to match.

    A 1 mm mask is 5-30 px wide; scaled to a shape generator's 100 px training diameter by
    nearest neighbour it becomes a staircase, which the generator then learns to draw.
    """
    import cv2

    component = np.asarray(component, dtype=bool)
    if not component.any():
        raise MaskError("the mask component is empty")
    rows, cols = np.flatnonzero(component.any(axis=1)), np.flatnonzero(component.any(axis=0))
    box = (slice(max(rows[0] - 2, 0), rows[-1] + 3), slice(max(cols[0] - 2, 0), cols[-1] + 3))
    mask, k = smooth_outline(component[box])
    if hu is None:
        return mask, None, k
    crop = np.pad(np.asarray(hu, dtype=np.float32)[box], 2, mode="edge")  # smooth_outline pads by 2
    big = cv2.resize(crop, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
    return mask, big, k


def slab_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """`[(first, last), ...]` z ranges of identical consecutive non-empty slices of a 3D mask.

    Thick CT (LIDC has 1.25-2.5 mm slices) resampled to 1 mm by repetition gives slabs of 2-3
    identical slices; a native 1 mm mask gives runs of one.
    """
    filled = np.flatnonzero(mask.any(axis=(1, 2)))
    if filled.size == 0:
        return []
    runs, start = [], int(filled[0])
    for z in range(int(filled[0]) + 1, int(filled[-1]) + 1):
        if not np.array_equal(mask[z], mask[z - 1]):
            runs.append((start, z - 1))
            start = z
    runs.append((start, int(filled[-1])))
    return runs


def _signed_distance(slice_mask: np.ndarray) -> np.ndarray:
    inside = ndimage.distance_transform_edt(slice_mask)
    outside = ndimage.distance_transform_edt(~slice_mask)
    return (inside - outside).astype(np.float32)


def round_slab_caps(volume_hu: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(hu, mask)` with a thick-slice nodule's slab staircase replaced by shape-based
    interpolation between slab centres, and each end closed by the cap of a sphere.

    Readers outline a nodule only on the slices where it is clearly visible, so the last
    contoured slice of a 2.5 mm series cuts the nodule where it is still wide. Projected for a
    radiograph, the stack of slabs gives a flat top and bottom (a rounded rectangle). Beyond
    each end slab's centre the outline now follows a sphere of the nodule's largest
    cross-section radius R through the end slice's radius r (it ends R - sqrt(R² - r²) from
    the centre side of that slice). The volume is padded in z with edge HU so the cap fits. A
    native 1 mm mask (no repeated slices) comes back unchanged.
    """
    runs = slab_runs(mask)
    if max((last - first + 1 for first, last in runs), default=1) < 2:
        return volume_hu, mask
    areas = [float(mask[first].sum()) for first, _ in runs]
    big_r = float(np.sqrt(max(areas) / np.pi))
    pad = int(np.ceil(big_r)) + 1
    hu = np.pad(volume_hu, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    centres = np.array([(first + last) / 2.0 + pad for first, last in runs])
    fields = [_signed_distance(mask[first]) for first, _ in runs]
    out = np.zeros((mask.shape[0] + 2 * pad,) + mask.shape[1:], dtype=bool)
    for z in range(out.shape[0]):
        if len(centres) > 1 and centres[0] <= z <= centres[-1]:
            k = min(int(np.searchsorted(centres, z, side="right")) - 1, len(centres) - 2)
            t = (z - centres[k]) / max(centres[k + 1] - centres[k], 1e-6)
            out[z] = (1.0 - t) * fields[k] + t * fields[k + 1] > 0
            continue
        end = 0 if z < centres[0] else -1
        r_end = float(np.sqrt(areas[end] / np.pi))
        beyond = abs(z - centres[end]) + float(np.sqrt(max(big_r * big_r - r_end * r_end, 0.0)))
        if beyond >= big_r:
            continue
        radius = float(np.sqrt(big_r * big_r - beyond * beyond))
        out[z] = fields[end] > r_end - radius  # the end contour shrunk to the sphere's radius here
    return hu, out


class NoduleLibrary:
    """Real CT nodules with their masks, sources and diameters; read-only."""

    def __init__(self, data: dict[str, np.ndarray], path: Path) -> None:
        self.path = path
        self._images = data["images"]
        self._masks = data["masks"]
        self._offsets = data["offsets"].astype(np.int64)
        self._shapes = data["shapes"].astype(np.int64)
        self.names: tuple[str, ...] = tuple(str(s) for s in data["names"])
        self.series_uids: tuple[str, ...] = tuple(str(s) for s in data["series_uids"])
        self.diameter_mm = data["diameter_mm"].astype(np.float64)
        self._banks: dict[str, MaskBank] = {}
        self._capped: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "NoduleLibrary":
        """Read a library file (default: the bundled one); MaskError naming the file otherwise."""
        path = Path(path) if path is not None else DEFAULT_LIBRARY_PATH
        data, _ = read_library_npz(path, _KEYS, LIBRARY_FORMAT, "real-nodule library",
                                   "scripts/build_nodule_library.py")
        check_ragged(data, path, "real-nodule library", arrays=("images", "masks"),
                     per_item=("series_uids", "diameter_mm"), ndim=3)
        return cls(data, path)

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def sha256(self) -> str:
        """Hash of the library file, for provenance."""
        return sha256_file(self.path)

    def _check(self, index: int) -> int:
        if not 0 <= int(index) < len(self):
            raise MaskError(f"nodule index {index} out of range (library has {len(self)})", self.path)
        return int(index)

    def volume(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """`(hu, mask)`: the 3D crop `(z, y, x)` int16 HU at 1 mm and its bool mask."""
        i = self._check(index)
        sl = slice(int(self._offsets[i]), int(self._offsets[i + 1]))
        shape = tuple(int(v) for v in self._shapes[i])
        return self._images[sl].reshape(shape), self._masks[sl].reshape(shape) > 0

    def axial(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """`(hu, mask)`: float32 HU of the axial slice with the largest mask area, and its
        cleaned mask (one component, holes filled)."""
        hu, mask = self.volume(index)
        z = int(np.argmax(mask.sum(axis=(1, 2))))
        return hu[z].astype(np.float32), clean_mask(mask[z])

    def capped_volume(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """`volume(index)` with round caps (`round_slab_caps`), computed once per nodule: an
        insertion asks for the projection and the thickness of the same nodule."""
        i = self._check(index)
        if i not in self._capped:
            self._capped[i] = round_slab_caps(*self.volume(i))
        return self._capped[i]

    def projected(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """`(template, mask)`: the SPEC §4.3 DRR template along the AP axis (rows = z, head
        up; columns = x) and the projected mask (any voxel along AP), cleaned; thick-slice
        nodules get round caps first (`round_slab_caps`)."""
        hu, mask = self.capped_volume(index)
        template = drr_template(hu, mask, axis=1)[::-1]
        # The outline is where the nodule is thick enough to show: "any voxel along AP" keeps
        # one-voxel fringes whose blocky outline then cuts the opacity with straight edges.
        thickness = ndimage.gaussian_filter(mask.sum(axis=1)[::-1].astype(np.float32), PROJECTED_OUTLINE_SIGMA)
        outline = thickness >= PROJECTED_OUTLINE_LEVEL * float(thickness.max())
        return np.ascontiguousarray(template), clean_mask(outline if outline.any() else mask.any(axis=1)[::-1])

    def projected_thickness(self, index: int) -> np.ndarray:
        """Mask voxels crossed along the AP axis (mm), in the same frame as `projected`."""
        _, mask = self.capped_volume(index)
        return np.ascontiguousarray(mask.sum(axis=1)[::-1].astype(np.float32))

    def view(self, index: int, view: str) -> tuple[np.ndarray, np.ndarray]:
        """`axial(index)` or `projected(index)` by name."""
        if view not in VIEWS:
            raise MaskError(f"unknown nodule view {view!r}; expected one of {VIEWS}")
        return self.axial(index) if view == "axial" else self.projected(index)

    def shape_bank(self, view: str) -> MaskBank:
        """The view's masks as a mask bank, entry i = nodule i, spacing 1 mm (cached)."""
        if view not in VIEWS:
            raise MaskError(f"unknown nodule view {view!r}; expected one of {VIEWS}")
        if view not in self._banks:
            smooth = [smooth_outline(self.view(i, view)[1]) for i in range(len(self))]
            bank = MaskBank.from_masks(
                [m for m, _ in smooth], spacings_mm=[(1.0 / k, 1.0 / k) for _, k in smooth],
                sources=list(self.names),
            )
            if len(bank) != len(self):
                raise MaskError(
                    f"the {view} shape bank has {len(bank)} entries for {len(self)} nodules", self.path
                )
            self._banks[view] = bank
        return self._banks[view]


@lru_cache(maxsize=1)
def bundled_library() -> NoduleLibrary:
    """The bundled library, loaded once per process (its shape banks are cached on it)."""
    return NoduleLibrary.load()


def heldout_series_uids(path: str | Path | None = None) -> frozenset[str]:
    """The series UIDs kept out of the library (benchmarks and training must exclude them)."""
    path = Path(path) if path is not None else SPLIT_PATH
    try:
        return frozenset(json.loads(path.read_text())["heldout_series_uids"])
    except (OSError, ValueError, KeyError) as exc:
        raise MaskError(f"cannot read the nodule split: {exc}", path) from exc
