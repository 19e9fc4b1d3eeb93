"""Classical synthesis backends: no weights, always available (SPEC §4).

- `FillBackend("telea" | "navier-stokes")`: removes a lesion by filling its hole with OpenCV
  inpainting on the image's own values; `FillBackend("texture")` (family "texture-fill") fills
  it with a smooth biharmonic base plus real texture from a nearby donor region;
- `RealNoduleBackend`: inserts a real LIDC nodule from the bundled library, in HU into CT
  (SPEC §4.2) or as a projected template into a radiograph (SPEC §4.3);
- `RealStoneBackend`: adds a real kidney stone's contrast (bundled stone library, P0's task)
  inside the requested outline.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lesion_studio.core.classical.ct_insertion import insert_ct_nodule
from lesion_studio.core.classical.fill import fill_hole
from lesion_studio.core.classical.nodule_library import NoduleLibrary, bundled_library
from lesion_studio.core.classical.stone_library import (
    SOURCE_SPAN,
    StoneLibrary,
    bundled_stone_library,
    contrast_scale,
    is_display_8bit,
    paste_stone,
)
from lesion_studio.core.classical.radiograph_insertion import (
    ASSUMED_FIELD_MM,
    insert_radiograph_nodule,
)
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.composition import context_band_px, inside_band
from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.synthesis_backend import IMAGE_KINDS, Patch

if TYPE_CHECKING:
    from lesion_studio.core.mask_bank import MaskBank
    from lesion_studio.core.synthesis_plan import SynthesisPlan

CLASSICAL_FAMILIES = ("auto-fill", "telea", "navier-stokes", "texture-fill", "real-nodule", "real-stone")
#: Fill method of each fill family ("texture" is taken by the learned texture generator).
_FILL_FAMILIES = {"telea": "telea", "navier-stokes": "navier-stokes", "texture-fill": "texture", "auto-fill": "auto"}
#: `auto-fill` uses Navier-Stokes for CT holes up to this area-equivalent diameter (px) — where
#: it has the best masked PSNR and SSIM of all fills (docs/benchmarks.md, realism) and its
#: smooth fill is not seen in noise — and the texture fill otherwise (radiographs, where it
#: beats TELEA's PSNR; larger CT holes, where OpenCV's fills leave a flat star-streaked disc).
AUTO_SMOOTH_MAX_CT_HOLE_PX = 24.0
#: Patch side = ceil(CONTEXT × mask-crop side) + MARGIN (image pixels, native scale).
CONTEXT_FACTOR = 3.0
MARGIN_PX = 8
DEFAULT_FILL_RADIUS_PX = 3.0
#: The outer share of an outpainting crop that the classical fill keeps as context.
OUTPAINT_CONTEXT_FRACTION = 0.125


def _native_geometry(plan: "SynthesisPlan") -> tuple[int, float]:
    side = max(plan.mask_crop.width, plan.mask_crop.height)
    return int(math.ceil(CONTEXT_FACTOR * side)) + MARGIN_PX, 1.0


class FillBackend:
    """Lesion removal by hole filling, SPEC §4.1: OpenCV inpainting (TELEA or Navier-Stokes) or
    the texture-preserving fill ("texture", family "texture-fill")."""

    modes: tuple[str, ...] = ("remove",)
    learned: bool = False
    #: Outpainting keeps the crop's outer eighth as the context the fill grows from (as the CT
    #: outpainter was trained: synthesis_engine crops both alike).
    outpaint_context_fraction: float = OUTPAINT_CONTEXT_FRACTION

    def __init__(self, method: str = "telea", radius_px: float = DEFAULT_FILL_RADIUS_PX) -> None:
        if method in ("texture-fill", "auto-fill"):
            method = method.split("-")[0]
        if method not in ("telea", "navier-stokes", "texture", "auto"):
            raise ConfigError(f"unknown fill method {method!r}; expected 'telea', 'navier-stokes', "
                              "'texture' or 'auto'")
        self.family = {"texture": "texture-fill", "auto": "auto-fill"}.get(method, method)
        if self.family == "texture-fill":  # the classical outpainter: texture-fill of the crop around the lesion
            self.modes = ("remove", "outpaint")
        self.method = method
        self.radius_px = float(radius_px)
        self.identity: dict[str, Any] = {
            "family": self.family, "method": method, "radius_px": self.radius_px, "classical": True,
        }

    def patch_geometry(self, plan: "SynthesisPlan") -> tuple[int, float]:
        """Three mask crops of context plus a margin, at native scale."""
        return _native_geometry(plan)

    def shape_bank(self, image_kind: str) -> "MaskBank | None":
        return None

    def method_for(self, patch: Patch) -> str:
        """The fill method a patch gets (`auto`: by image kind and hole size)."""
        if self.method != "auto":
            return self.method
        # the hole itself: `region` may also hold border-mirror pixels (synthesis_engine._mirrored_footprint)
        hole_px = 2.0 * math.sqrt(float(np.count_nonzero(patch.footprint)) / math.pi)
        small_ct = patch.image_kind == "ct" and hole_px <= AUTO_SMOOTH_MAX_CT_HOLE_PX
        return "navier-stokes" if small_ct else "texture"

    def fill_info(self, patch: Patch) -> dict[str, Any]:
        return {"fill_method": self.method_for(patch)}

    def fill(self, patches: Sequence[Patch]) -> list[np.ndarray]:
        """Each patch with its region inpainted from the pixels around it. Outpainting fills all
        of the crop inside its outer band, kept lesions too (the engine pastes only the region
        back): grown from the band alone, the fill smears no lesion's density into a halo. The
        band is thin, so the result is the smooth (biharmonic) base: no donor texture fits."""
        out = []
        for p in patches:
            hole = p.region
            if p.plan.request.mode == "outpaint":
                side = min(p.pixels.shape)
                hole = inside_band(p.pixels.shape, context_band_px(side, self.outpaint_context_fraction))
            out.append(fill_hole(p.pixels, hole, self.method_for(p), self.radius_px))
        return out


#: Nodules whose area-equivalent diameter is under this share of their moment diameter (P3's
#: size measure, which the size control sets) are not inserted: for those lobulated or
#: elongated outlines a requested 10 mm would measure under 9.2 mm as an area-equivalent
#: circle. Keeps 86 % (axial) and 89 % (projected) of the library.
MIN_AREA_TO_MOMENT_RATIO = 0.94


class RealNoduleBackend:
    """Insertion of real CT nodules from the bundled library (SPEC §4.2, §4.3)."""

    family = "real-nodule"
    modes: tuple[str, ...] = ("inpaint",)
    learned: bool = False

    def __init__(self, library: NoduleLibrary | None = None) -> None:
        self.library = library if library is not None else bundled_library()
        self._banks: dict[str, tuple[MaskBank, np.ndarray]] = {}
        self.identity: dict[str, Any] = {
            "family": self.family, "classical": True,
            "library_file": self.library.path.name,
            "library_sha256": self.library.sha256,
            "library_count": len(self.library),
            "ct_blend": "HU replacement, Gaussian-softened footprint",
            "radiograph_blend": "DRR template + 0.3 projected thickness, added as attenuation (NODE21 baseline contrast)",
        }

    def patch_geometry(self, plan: "SynthesisPlan") -> tuple[int, float]:
        """Three mask crops of context plus a margin, at native scale."""
        return _native_geometry(plan)

    def shape_bank(self, image_kind: str) -> "MaskBank | None":
        """The shapes of the nodules this backend inserts into an image of this kind: axial
        masks for CT, projected masks for radiographs, restricted to compact outlines (see
        `MIN_AREA_TO_MOMENT_RATIO`); entry j is library nodule `library_index(kind, j)`."""
        return self._eligible(image_kind)[0]

    def library_index(self, image_kind: str, bank_index: int) -> int:
        """The library nodule behind entry `bank_index` of `shape_bank(image_kind)`."""
        return int(self._eligible(image_kind)[1][int(bank_index)])

    def _eligible(self, image_kind: str) -> "tuple[MaskBank, np.ndarray]":
        if image_kind not in IMAGE_KINDS:
            raise ConfigError(f"unknown image kind {image_kind!r}; expected one of {IMAGE_KINDS}")
        if image_kind not in self._banks:
            from lesion_studio.core.mask_bank import MaskBank

            full = self.library.shape_bank("axial" if image_kind == "ct" else "projected")
            ratios = np.array([2.0 * math.sqrt(m.sum() / math.pi) / moment_diameter(m) for m in full.masks])
            keep = np.flatnonzero(ratios >= MIN_AREA_TO_MOMENT_RATIO)
            bank = MaskBank(masks=full.masks[keep], diameters_px=full.diameters_px[keep],
                            diameters_mm=full.diameters_mm[keep], sources=tuple(full.sources[i] for i in keep),
                            d_init_px=full.d_init_px, patch_px=full.patch_px)
            self._banks[image_kind] = (bank, keep)
        return self._banks[image_kind]

    def _index(self, patch: Patch) -> int:
        index = patch.plan.bank_index
        if index is None:
            return patch.seed % len(self.library)
        return self.library_index(patch.image_kind, index)

    def fill(self, patches: Sequence[Patch]) -> list[np.ndarray]:
        """Each patch with a real nodule inserted over its footprint."""
        return [self._fill_one(p) for p in patches]

    def _fill_one(self, patch: Patch) -> np.ndarray:
        plan = patch.plan
        pose = {"rotation_deg": plan.rotation_deg, "flip_vertical": plan.flip_vertical,
                "flip_horizontal": plan.flip_horizontal}
        index = self._index(patch)
        if not np.any(patch.footprint):
            return np.asarray(patch.pixels, dtype=np.float32).copy()
        if patch.image_kind == "ct":
            hu, mask = self.library.axial(index)
            return insert_ct_nodule(patch.pixels, patch.footprint, hu, mask, **pose)
        if patch.image_kind == "radiograph":
            template, mask = self.library.projected(index)
            return insert_radiograph_nodule(
                patch.pixels, patch.footprint, template, mask,
                diameter_mm=_footprint_diameter_mm(patch), image_range=patch.image_range,
                thickness=self.library.projected_thickness(index), **pose,
            )
        raise ConfigError(f"unknown image kind {patch.image_kind!r}; expected one of {IMAGE_KINDS}")


class RealStoneBackend:
    """Insertion of real kidney stones from the bundled stone library (P0's task): the stone
    nearest in area to the requested outline (one of `DONOR_POOL`, by the plan's seed) keeps
    its own intensity profile, resampled onto the outline and added to the tissue there.

    Unlike real-nodule, it takes the requested shape (drawn, bank, generator): the library's
    stones are small and mostly round, and the benchmark compares at the real stones' outlines."""

    family = "real-stone"
    modes: tuple[str, ...] = ("inpaint",)
    learned: bool = False

    def __init__(self, library: StoneLibrary | None = None) -> None:
        self.library = library if library is not None else bundled_stone_library()
        self.identity: dict[str, Any] = {
            "family": self.family, "classical": True,
            "library_file": self.library.path.name,
            "library_sha256": self.library.sha256,
            "library_count": len(self.library),
            "blend": "the stone's contrast over its own background, added under a softened outline; "
                     "8-bit display units, scaled to the image's robust span / 255 outside 0-255",
        }

    def patch_geometry(self, plan: "SynthesisPlan") -> tuple[int, float]:
        """Three mask crops of context plus a margin, at native scale."""
        return _native_geometry(plan)

    def shape_bank(self, image_kind: str) -> None:
        return None

    def fill(self, patches: Sequence[Patch]) -> list[np.ndarray]:
        """Each patch with a real stone added over its footprint."""
        return [self._fill_one(p) for p in patches]

    def _fill_one(self, patch: Patch) -> np.ndarray:
        if not np.any(patch.footprint):
            return np.asarray(patch.pixels, dtype=np.float32).copy()
        plan = patch.plan
        index = self.library.nearest(int(patch.footprint.sum()), patch.seed)
        contrast, outline = self.library.stone(index)
        return paste_stone(patch.pixels, patch.footprint, contrast, outline, scale=contrast_scale(patch.image_range),
                           rotation_deg=plan.rotation_deg, flip_vertical=plan.flip_vertical,
                           flip_horizontal=plan.flip_horizontal,
                           ceiling=SOURCE_SPAN if is_display_8bit(patch.image_range) else None)


def _footprint_diameter_mm(patch: Patch) -> float:
    """The footprint's diameter in mm; without a spacing, a chest field of ~400 mm is assumed."""
    spacing = patch.spacing_mm
    if spacing is None:
        shape = patch.plan.image_shape
        px = ASSUMED_FIELD_MM / float(max(shape))
        spacing = (px * patch.scale, px * patch.scale)
    return moment_diameter(patch.footprint, spacing)


def classical_backend(family: str) -> FillBackend | RealNoduleBackend | RealStoneBackend:
    """The classical backend of a family name in `CLASSICAL_FAMILIES`."""
    if family in _FILL_FAMILIES:
        return FillBackend(_FILL_FAMILIES[family])
    if family == "real-nodule":
        return RealNoduleBackend()
    if family == "real-stone":
        return RealStoneBackend()
    raise ConfigError(f"unknown classical family {family!r}; expected one of {CLASSICAL_FAMILIES}")
