"""Where a reader study's pixels come from: real lesions, their images and size bins.

Two sources, both read into the same records:
- a patch npz like the bundled LIDC/NODE21 axial patches (`images` `(N, H, W)` or
  `(N, S, H, W)` with `slice_offsets`, `masks`, `names`, `spacing_mm`; series from a
  `series_uids` array or a `nodules.csv` beside the file): one lesion per patch, the mask
  component nearest the patch centre;
- a lesion-studio dataset folder (`core/dataset.py`): every 8-connected mask component of
  every image is a lesion; lesion-free tissue lies away from the masks.

Lesion sizes are the P3 moment diameter (`moment_diameter`, mm) of the lesion as it shows on
this image — the size a reader sees, and the size a synthetic lesion is asked for. Groups are
series (npz) or patients (dataset): a group's lesions always stay on one side of the study.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from lesion_studio.core.errors import ConfigError, ImageLoadError
from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.intensity import image_kind

#: Components smaller than this (pixels) are annotation specks, not lesions.
MIN_LESION_PX = 4
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class SizeBin:
    """`[low_mm, high_mm)`; `high_mm` is inf for the last, open bin."""

    low_mm: float
    high_mm: float

    @property
    def label(self) -> str:
        low = f"{self.low_mm:g}"
        return f">={low} mm" if math.isinf(self.high_mm) else f"{low}-{self.high_mm:g} mm"

    def holds(self, diameter_mm: float) -> bool:
        return self.low_mm <= diameter_mm < self.high_mm


def size_bins(edges_mm: tuple[float, ...] | list[float]) -> tuple[SizeBin, ...]:
    """Bins from increasing edges: `[3, 6, 10]` → [3, 6), [6, 10), [10, inf)."""
    edges = [float(e) for e in edges_mm]
    return tuple(SizeBin(a, b) for a, b in zip(edges, [*edges[1:], math.inf]))


def bin_of(bins: tuple[SizeBin, ...], diameter_mm: float) -> SizeBin | None:
    """The bin holding `diameter_mm`, or None (smaller than the first edge)."""
    return next((b for b in bins if b.holds(diameter_mm)), None)


class SourceImage:
    """One image of a source: pixels and lesion mask read on demand, with its group and spacing."""

    def __init__(self, *, read_pixels: Callable[[], np.ndarray], read_mask: Callable[[], np.ndarray],
                 spacing_mm: tuple[float, float] | None, modality: str, group: str, source: str,
                 read_location: Callable[[], np.ndarray | None] | None = None) -> None:
        self._read_pixels, self._read_mask, self._read_location = read_pixels, read_mask, read_location
        self.spacing_mm = spacing_mm
        self.modality = modality
        self.group = group
        self.source = source

    @cached_property
    def pixels(self) -> np.ndarray:
        """`(H, W)` float32 in the source's units (HU for CT)."""
        return np.asarray(self._read_pixels(), dtype=np.float32)

    @cached_property
    def lesion_mask(self) -> np.ndarray:
        """`(H, W)` bool: every lesion of the image."""
        mask = np.asarray(self._read_mask()) > 0
        if mask.shape != self.pixels.shape:
            raise ConfigError(f"mask shape {mask.shape} differs from image shape {self.pixels.shape}")
        return mask

    @cached_property
    def location_map(self) -> np.ndarray | None:
        """`(H, W)` bool where lesions may be placed, or None (no map)."""
        if self._read_location is None:
            return None
        loc = self._read_location()
        return None if loc is None else np.asarray(loc) > 0

    @cached_property
    def image_type(self) -> str:
        """"ct" or "radiograph" (`core.intensity.image_kind`)."""
        return image_kind(self.pixels, self.modality or None)

    @cached_property
    def integer_valued(self) -> bool:
        """True when every pixel is a whole number (CT in HU, 8/16-bit radiographs)."""
        return bool(np.all(self.pixels == np.round(self.pixels)))

    def release(self) -> None:
        """Forget the cached pixels and masks (large radiographs)."""
        for name in ("pixels", "lesion_mask", "location_map"):
            self.__dict__.pop(name, None)


@dataclass(frozen=True, eq=False)
class SourceLesion:
    """One real lesion: its image, its own mask component and its size.

    The component is kept as its bounding box (`origin_rc` + `box_mask`), so a dataset of
    large radiographs costs memory in proportion to its lesions, not its images.
    """

    image: SourceImage
    origin_rc: tuple[int, int]
    box_mask: np.ndarray
    centroid_rc: tuple[float, float]
    diameter_mm: float
    label: str  # where it is, for the answer key: "<source> lesion k"

    @property
    def group(self) -> str:
        return self.image.group

    def mask(self) -> np.ndarray:
        """The component as an image-sized bool mask."""
        out = np.zeros(self.image.pixels.shape, dtype=bool)
        r, c = self.origin_rc
        out[r : r + self.box_mask.shape[0], c : c + self.box_mask.shape[1]] = self.box_mask
        return out


@dataclass
class SourceSet:
    """Every image and lesion of a study's real source, and what was left out and why."""

    images: list[SourceImage]
    lesions: list[SourceLesion]
    excluded: dict[str, int]
    description: str


def _components(mask: np.ndarray) -> list[np.ndarray]:
    labels, n = ndimage.label(mask, structure=_EIGHT)
    return [labels == k for k in range(1, n + 1)]


def _lesion(image: SourceImage, component: np.ndarray, label: str) -> SourceLesion | None:
    if int(component.sum()) < MIN_LESION_PX or image.spacing_mm is None:
        return None
    rows, cols = np.nonzero(component)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    return SourceLesion(image=image, origin_rc=(r0, c0), box_mask=component[r0:r1, c0:c1].copy(),
                        centroid_rc=(float(rows.mean()), float(cols.mean())),
                        diameter_mm=moment_diameter(component, image.spacing_mm), label=label)


# -- npz ------------------------------------------------------------------------------------------
def _npz_series(path: Path, names: list[str], data: dict) -> tuple[list[str], np.ndarray, str]:
    """`(group per patch, padded flags, where the groups came from)`."""
    n = len(names)
    padded = np.zeros(n, dtype=bool)
    if "series_uids" in data:
        return [str(s) for s in data["series_uids"]], padded, "series_uids"
    table = path.with_name("nodules.csv")
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as fh:
            rows = {r.get("name", ""): r for r in csv.DictReader(fh)}
        if all(name in rows and rows[name].get("seriesuid") for name in names):
            padded = np.array([str(rows[name].get("padded", "0")).strip() == "1" for name in names])
            return [rows[name]["seriesuid"] for name in names], padded, table.name
    return list(names), padded, "names (no series known: each patch is its own group)"


def load_npz_source(path: Path, *, modality: str = "", groups_excluded: frozenset[str] = frozenset(),
                    heldout_groups: frozenset[str] = frozenset(),
                    names_excluded: frozenset[str] = frozenset()) -> SourceSet:
    """Real lesions of a patch npz (see the module docstring); ConfigError naming the file.

    `groups_excluded` are left out; when the file shares any group with `heldout_groups`
    (the nodule library's held-out split), only those groups are kept; patches whose name
    (without `.mha`) is in `names_excluded` are left out.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"cannot read the patch npz: {exc}", path) from exc
    for key in ("images", "masks", "spacing_mm"):
        if key not in data:
            raise ConfigError(f"the patch npz has no {key!r} array (it has {sorted(data)})", path)
    images, masks = data["images"], data["masks"]
    if images.shape != masks.shape or images.ndim not in (3, 4):
        raise ConfigError(f"'images' {images.shape} and 'masks' {masks.shape} must be equal (N, H, W) or "
                          "(N, S, H, W) arrays", path)
    if images.ndim == 4:  # slabs: the centre slice (offset 0 when the file says which it is)
        offsets = data.get("slice_offsets")
        centre = int(np.flatnonzero(offsets == 0)[0]) if offsets is not None and (offsets == 0).any() \
            else images.shape[1] // 2
        images, masks = images[:, centre], masks[:, centre]
    n = len(images)
    names = [str(s) for s in data["names"]] if "names" in data else [f"patch_{i}" for i in range(n)]
    spacing = np.asarray(data["spacing_mm"], dtype=np.float64)
    spacing = np.broadcast_to(spacing, (n, 2)) if spacing.shape == (2,) else spacing
    if len(names) != n or spacing.shape != (n, 2) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise ConfigError("'names' and 'spacing_mm' must have one entry (positive row, col mm) per patch", path)
    groups, padded, group_source = _npz_series(path, names, data)
    restrict = heldout_groups if heldout_groups & set(groups) else None
    excluded = {"padded at the scan border": 0, "in the real-nodule library's series": 0,
                "outside the library's held-out split": 0, "nodules of the real-nodule library": 0,
                "no lesion in the mask": 0}
    out_images: list[SourceImage] = []
    lesions: list[SourceLesion] = []
    for i in range(n):
        if padded[i]:
            excluded["padded at the scan border"] += 1
            continue
        if groups[i] in groups_excluded:
            excluded["in the real-nodule library's series"] += 1
            continue
        if restrict is not None and groups[i] not in restrict:
            excluded["outside the library's held-out split"] += 1
            continue
        if names_excluded and names[i].removesuffix(".mha") in names_excluded:
            excluded["nodules of the real-nodule library"] += 1
            continue
        pix, msk = images[i], masks[i]
        image = SourceImage(read_pixels=lambda p=pix: p, read_mask=lambda m=msk: m,
                            spacing_mm=(float(spacing[i, 0]), float(spacing[i, 1])), modality=modality,
                            group=groups[i], source=f"{path.name}[{i}] {names[i]}")
        comps = [c for c in _components(image.lesion_mask) if c.sum() >= MIN_LESION_PX]
        if not comps:
            excluded["no lesion in the mask"] += 1
            continue
        centre = (np.asarray(pix.shape) - 1) / 2.0
        own = min(comps, key=lambda c: float(np.hypot(*(np.argwhere(c).mean(0) - centre))))
        lesion = _lesion(image, own, f"{image.source} (series {groups[i]})")
        if lesion is not None:
            out_images.append(image)
            lesions.append(lesion)
    return SourceSet(out_images, lesions, {k: v for k, v in excluded.items() if v},
                     f"{path} ({n} patches; groups from {group_source})")


# -- dataset -------------------------------------------------------------------------------------
def load_dataset_source(root: Path, *, splits: tuple[str, ...] = (), modality: str = "") -> SourceSet:
    """Real lesions (mask components) and lesion-free images of a dataset folder."""
    from lesion_studio.core.dataset import load_dataset

    ds = load_dataset(root)
    cases = [c for c in ds.cases if not splits or c.split in splits]
    if not cases:
        raise ConfigError(f"the dataset has no cases in splits {list(splits)}", Path(root))
    excluded = {"no pixel spacing (sizes in mm unknown)": 0}
    images: list[SourceImage] = []
    lesions: list[SourceLesion] = []
    for case in cases:
        try:
            spacing = ds.spacing_for(case)
        except (ImageLoadError, OSError, RuntimeError):
            spacing = None
        if spacing is None:
            excluded["no pixel spacing (sizes in mm unknown)"] += 1
            continue
        image = SourceImage(
            read_pixels=lambda c=case: ds.read_image(c), read_mask=lambda c=case: ds.read_mask(c),
            read_location=lambda c=case: ds.read_location_map(c), spacing_mm=spacing,
            modality=modality or ds.modality or "", group=case.patient_id, source=f"{Path(root).name}/{case.case_id}")
        images.append(image)
        for k, comp in enumerate(_components(image.lesion_mask)):
            lesion = _lesion(image, comp, f"{image.source} lesion {k + 1} (patient {case.patient_id})")
            if lesion is not None:
                lesions.append(lesion)
        _ = (image.image_type, image.integer_valued)  # cached: these outlive release()
        image.release()  # pixels are read again only if the builder picks this image
    return SourceSet(images, lesions, {k: v for k, v in excluded.items() if v},
                     f"{root} ({len(cases)} cases, groups = patients)")
