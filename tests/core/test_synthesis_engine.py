"""The one synthesis path: native-scale patches, hole-only paste, intensity mapping, clean shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.crops import lesion_bbox
from lesion_studio.core.intensity import choose_mapping, image_kind, mapping_for_range
from lesion_studio.core.synthesis_backend import Patch, SynthesisBackend
from lesion_studio.core.geometry.crops import PixelBox
from lesion_studio.core.synthesis_engine import SynthesisEngine, composite, seam_alpha
from lesion_studio.core.synthesis_plan import Blending, MaskSource, SynthesisRequest
from tests.core._lesion_strategies import ellipse_mask, lesion_shapes


class ConstantBackend:
    """Writes `value` over the whole patch (so any leak outside the hole would show)."""

    family = "constant"
    modes = ("inpaint", "remove", "outpaint")
    learned = False
    identity = {"family": "constant"}

    def __init__(self, value: float = 500.0, model_px: int | None = None) -> None:
        self.value, self.model_px = value, model_px
        self.seen: list[Patch] = []

    def patch_geometry(self, plan):
        if self.model_px is None:
            return int(np.ceil(3 * plan.mask_crop.width)) + 8, 1.0
        from lesion_studio.core.synthesis_engine import native_patch_geometry

        return native_patch_geometry(plan, self.model_px)

    def shape_bank(self, image_kind):
        return None

    def fill(self, patches):
        self.seen.extend(patches)
        return [np.full(p.pixels.shape, self.value, np.float32) for p in patches]


def _image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, size=shape).astype(np.float32)


def test_the_fake_backend_meets_the_protocol():
    assert isinstance(ConstantBackend(), SynthesisBackend)


@settings(max_examples=40, deadline=None)
@given(
    shape=lesion_shapes(max_radius=20.0),
    rows=st.integers(40, 160), cols=st.integers(40, 160),
    frac_r=st.floats(-0.1, 1.1), frac_c=st.floats(-0.1, 1.1),
    diameter_px=st.floats(5.0, 40.0), feather=st.sampled_from([0.0, 3.0]),
)
def test_inpaint_changes_no_pixel_outside_hole_plus_feather(shape, rows, cols, frac_r, frac_c, diameter_px, feather):
    engine = SynthesisEngine(ConstantBackend())
    req = SynthesisRequest(mode="inpaint", centre_rc=(frac_r * rows, frac_c * cols), mask_source=MaskSource("drawn"),
                           diameter_px=diameter_px, blending=Blending(feather_px=feather))
    image = _image((rows, cols))
    try:
        result = engine(image, req, source_mask=shape)
    except ConfigError:
        assume(False)  # the lesion fell entirely outside the image
        return
    hole = result.plan.footprint_image()
    reach = ndimage.distance_transform_edt(~hole) <= feather
    outside = ~reach
    assert np.array_equal(result.image[outside].view(np.uint32), image[outside].view(np.uint32))
    assert np.all(result.image[hole] == 500.0)  # the hole is fully replaced, never faded
    np.testing.assert_array_equal(result.mask, hole)
    if feather > 0:  # the seam blends: strictly between the two just outside the hole
        ring = (ndimage.distance_transform_edt(~hole) == 1.0)
        assert np.all(np.abs(result.image[ring] - image[ring]) < np.abs(500.0 - image[ring]))


@settings(max_examples=30, deadline=None)
@given(shape=lesion_shapes(max_radius=15.0), rows=st.integers(40, 140), cols=st.integers(40, 140),
       frac_r=st.floats(0.0, 1.0), frac_c=st.floats(0.0, 1.0), margin=st.integers(0, 3))
def test_outpaint_keeps_every_lesion_pixel_bit_identical(shape, rows, cols, frac_r, frac_c, margin):
    lesion_mask = np.zeros((rows, cols), dtype=bool)
    fp = shape[np.ix_(shape.any(1), shape.any(0))][:30, :30]
    assume(fp.any())
    r0, c0 = int(frac_r * (rows - fp.shape[0])), int(frac_c * (cols - fp.shape[1]))
    lesion_mask[r0 : r0 + fp.shape[0], c0 : c0 + fp.shape[1]] = fp
    req = SynthesisRequest(mode="outpaint", centre_rc=lesion_bbox(lesion_mask).centre_rc,
                           mask_source=MaskSource("existing"), outpaint_keep_margin_px=margin)
    image = _image((rows, cols), seed=3)
    result = SynthesisEngine(ConstantBackend(7.0))(image, req, lesion_mask=lesion_mask)
    kept = result.plan.footprint_image()
    assert np.array_equal(result.image[kept].view(np.uint32), image[kept].view(np.uint32))
    assert np.any(result.image != image)
    np.testing.assert_array_equal(result.mask, lesion_mask)


def test_remove_fills_the_lesion_outline_and_clears_its_mask():
    lesion = ellipse_mask((100, 100), (40, 60), (6, 9), 0.3) | ellipse_mask((100, 100), (80, 20), (4, 4))
    image = _image((100, 100))
    req = SynthesisRequest(mode="remove", centre_rc=(40, 60), mask_source=MaskSource("existing"))
    result = SynthesisEngine(ConstantBackend(0.0))(image, req, lesion_mask=lesion)
    first = ellipse_mask((100, 100), (40, 60), (6, 9), 0.3)
    hole = result.plan.footprint_image()
    assert hole[first].all() and not result.mask[first].any() and result.mask[80, 20]
    # the hole follows the lesion (grown by 2 px), not a disc over its bounding box
    assert hole.sum() < 1.8 * first.sum()


def test_small_lesions_are_cut_at_native_scale_large_ones_downsampled_at_most_twice():
    backend = ConstantBackend(model_px=64)
    engine = SynthesisEngine(backend)
    image = _image((400, 400))
    small = SynthesisRequest(mode="inpaint", centre_rc=(200, 200), mask_source=MaskSource("drawn"), diameter_px=12)
    result = engine(image, small, source_mask=np.ones((8, 8), bool))
    assert backend.seen[-1].scale == 1.0 and backend.seen[-1].pixels.shape == (64, 64)
    assert result.box.shape == (64, 64) and result.provenance["patch"]["downsampled"] is False
    large = SynthesisRequest(mode="inpaint", centre_rc=(200, 200), mask_source=MaskSource("drawn"), diameter_px=40)
    result = engine(image, large, source_mask=np.ones((8, 8), bool))
    patch = backend.seen[-1]
    assert 1.0 < patch.scale <= 2.0 and patch.pixels.shape[0] == pytest.approx(64, abs=1)
    assert result.provenance["patch"]["downsampled"] is True and "downsampled" in result.provenance
    too_large = SynthesisRequest(mode="inpaint", centre_rc=(200, 200), mask_source=MaskSource("drawn"), diameter_px=80)
    with pytest.raises(ConfigError, match="does not fit"):
        engine(image, too_large, source_mask=np.ones((8, 8), bool))


def test_dirty_drawn_shapes_are_placed_as_one_clean_component():
    dirty = ellipse_mask((60, 60), (30, 30), (20, 14))
    dirty[28:32, 28:32] = False  # an interior hole
    dirty[2:4, 2:4] = True  # a speck
    req = SynthesisRequest(mode="inpaint", centre_rc=(100, 100), mask_source=MaskSource("drawn"), diameter_px=30)
    result = SynthesisEngine(ConstantBackend())(_image((200, 200)), req, source_mask=dirty)
    labels, n = ndimage.label(result.mask, structure=np.ones((3, 3)))
    assert n == 1 and np.array_equal(ndimage.binary_fill_holes(result.mask), result.mask)


def test_seam_alpha_is_one_inside_and_zero_beyond_the_feather():
    region = np.zeros((30, 30), bool)
    region[10:20, 10:20] = True
    alpha = seam_alpha(region, 3.0)
    assert np.all(alpha[region] == 1.0)
    assert alpha[9, 15] == pytest.approx(0.75) and alpha[7, 15] == pytest.approx(0.25) and alpha[6, 15] == 0.0


def test_nan_images_and_unserved_modes_are_refused_with_a_reason():
    image = _image((60, 60))
    image[3, 3] = np.nan
    req = SynthesisRequest(mode="inpaint", centre_rc=(30, 30), mask_source=MaskSource("drawn"))
    with pytest.raises(ConfigError, match="NaN"):
        SynthesisEngine(ConstantBackend())(image, req, source_mask=np.ones((5, 5), bool))
    backend = ConstantBackend()
    backend.modes = ("remove",)
    with pytest.raises(ConfigError, match="not 'inpaint'"):
        SynthesisEngine(backend)(_image((60, 60)), req, source_mask=np.ones((5, 5), bool))


def test_gui_style_variants_equal_single_calls():
    engine = SynthesisEngine(ConstantBackend())
    image = _image((120, 120))
    reqs = [SynthesisRequest(mode="inpaint", centre_rc=(60, 60), mask_source=MaskSource("drawn"), diameter_px=14,
                             seed=s) for s in (1, 2)]
    batch = engine(image, reqs, source_mask=ellipse_mask((40, 40), (20, 20), (12, 8)))
    for req, res in zip(reqs, batch):
        single = engine(image, req, source_mask=ellipse_mask((40, 40), (20, 20), (12, 8)))
        np.testing.assert_array_equal(single.image, res.image)


# -- intensity mapping on three unit systems --------------------------------------------------------
PHANTOM_MODEL_RANGE = (193.0, 2652.0)  # the demo texture model's recorded training range
HU_MODEL_RANGE = (-1024.0, 400.0)


def test_intensity_mapping_on_an_8bit_png_a_16bit_cr_and_a_ct_slice(real_images):
    png, cr, ct = real_images["png"], real_images["cr"], real_images["ct"]
    assert image_kind(png.pixels, png.modality) == "radiograph"
    assert image_kind(cr.pixels, cr.modality) == "radiograph"
    assert image_kind(ct.pixels, ct.modality) == "ct"
    assert image_kind(ct.pixels) == "ct"  # by air-valued pixels alone
    # a phantom-trained model: 8-bit PNG and CR are in other units → the image's own range
    m = choose_mapping(png.pixels, PHANTOM_MODEL_RANGE)
    assert m.source == "image" and 0 <= m.lo < m.hi <= 255
    m = choose_mapping(cr.pixels, PHANTOM_MODEL_RANGE)
    assert m.source == "image" and m.hi > 255
    # an HU-trained model on a CT slice keeps its own range; the same model on a PNG does not
    assert choose_mapping(ct.pixels, HU_MODEL_RANGE).source == "checkpoint"
    assert choose_mapping(png.pixels, HU_MODEL_RANGE).source == "image"
    assert choose_mapping(png.pixels, HU_MODEL_RANGE, "checkpoint").source == "checkpoint"
    with pytest.raises(ConfigError, match="intensity"):
        mapping_for_range((0, 1), (0, 1), "whatever")


def test_composite_writes_only_inside_the_image_part_of_the_box():
    image = np.zeros((40, 50), dtype=np.float32)
    out = composite(image, np.full((20, 20), 7.0, np.float32), PixelBox(-5, 40, 20, 20), np.ones((20, 20), np.float32))
    assert np.all(out[0:15, 40:50] == 7.0)
    outside = np.ones_like(image, dtype=bool)
    outside[0:15, 40:50] = False
    assert np.all(out[outside] == 0.0) and np.all(image == 0.0)  # the input is not modified
    same = composite(image, np.zeros((5, 5), np.float32), PixelBox(60, 60, 5, 5), np.ones((5, 5), np.float32))
    np.testing.assert_array_equal(same, image)


def test_outpaint_keeps_a_neighbouring_lesion_and_its_mask():
    """Outpainting around one lesion must not paint over another one in its crop: the ground
    truth still marks it (it used to be regenerated while its mask stayed)."""
    lesion = np.zeros((80, 80), bool)
    lesion[36:44, 36:44] = True
    lesion[46:50, 36:40] = True  # a second lesion 2 px below the first, inside its crop
    image = _image((80, 80), seed=5)
    req = SynthesisRequest(mode="outpaint", centre_rc=(40, 40), mask_source=MaskSource("existing"))
    result = SynthesisEngine(ConstantBackend(7.0))(image, req, lesion_mask=lesion)
    assert result.box.row0 + result.box.height > 50  # the neighbour lies in the crop
    np.testing.assert_array_equal(result.image[lesion], image[lesion])
    np.testing.assert_array_equal(result.mask, lesion)
    assert np.any(result.image != image)


def test_outpaint_seam_fades_at_the_patch_edge():
    lesion = np.zeros((80, 80), bool)
    lesion[36:44, 36:44] = True
    req = SynthesisRequest(mode="outpaint", centre_rc=(40, 40), mask_source=MaskSource("existing"),
                           blending=Blending(feather_px=4.0))
    result = SynthesisEngine(ConstantBackend(8.0))(np.zeros((80, 80), np.float32), req, lesion_mask=lesion)
    box = result.box
    mid = box.col0 + box.width // 2
    assert result.image[box.row0, mid] == pytest.approx(1.0)  # 0.5 px / 4 px of the way: 8 · 0.125
    assert result.image[box.row0 + 6, mid] == pytest.approx(8.0)
    assert np.all(result.image[lesion] == 0.0)
