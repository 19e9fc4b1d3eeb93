"""P0 §IV-A augmentation plans, P0 §III-A non-lesion masks, P3/P1 generator inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion_studio.core.augmentation_plan import (
    AugmentationPlan,
    plan_augmentation,
    plan_augmentations,
    sample_location,
)
from lesion_studio.core.errors import MaskError
from lesion_studio.core.geometry.composition import compose, outpaint_region, texture_input
from lesion_studio.core.geometry.crops import component_masks
from lesion_studio.core.geometry.nonlesion import (
    lesion_free_region,
    removal_hole,
    sample_nonlesion_mask,
)
from lesion_studio.core.mask_bank import MaskBank
from tests.core._lesion_strategies import ellipse_mask

SHAPE = (160, 160)


@pytest.fixture(scope="module")
def bank() -> MaskBank:
    masks = [ellipse_mask((64, 64), (32, 32), (6, 4), 0.3), ellipse_mask((64, 64), (32, 32), (5, 5))]
    return MaskBank.from_masks(masks)


def _location_map() -> np.ndarray:
    loc = np.zeros(SHAPE, bool)
    loc[40:120, 30:70] = True  # a "left lung field"
    return loc


# -- location sampling ------------------------------------------------------------------------
def test_location_map_weights_are_honoured():
    weights = np.zeros((10, 10))
    weights[2, 3] = 1.0
    weights[7, 8] = 3.0
    rng = np.random.default_rng(0)
    draws = [sample_location(rng, weights) for _ in range(2000)]
    assert set(draws) == {(2.5, 3.5), (7.5, 8.5)}
    share = sum(d == (7.5, 8.5) for d in draws) / len(draws)
    assert share == pytest.approx(0.75, abs=0.04)


def test_location_map_without_room_is_an_error():
    with pytest.raises(MaskError):
        sample_location(np.random.default_rng(0), np.zeros((5, 5)))
    with pytest.raises(MaskError):
        sample_location(np.random.default_rng(0), np.ones((5, 5)), exclude=np.ones((5, 5), bool))


# -- lesion-free images ------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_lesion_free_image_gets_one_to_three_separate_lesions_in_the_map(bank, seed):
    loc = _location_map()
    plan = plan_augmentation(SHAPE, lesion_mask=None, location_map=loc, bank=bank, seed=seed,
                             spacing_mm=(0.5, 0.5), diameters_mm=[4.0, 6.0])
    assert plan.image_kind == "lesion-free"
    assert 1 <= len(plan.steps) <= 3  # P0 §IV-A
    footprints = [s.footprint_image() for s in plan.steps]
    for step in plan.steps:
        assert step.request.mode == "inpaint" and step.request.mask_source.kind == "bank"
        r, c = step.request.centre_rc
        assert loc[int(r), int(c)]
        assert -10.0 <= step.rotation_deg <= 10.0
        assert step.request.diameter_mm in (4.0, 6.0)
    total = np.sum(footprints, axis=0)
    assert total.max() <= 1  # no overlapping lesions
    result = plan.apply_to_mask(np.zeros(SHAPE, bool))
    assert len(component_masks(result)) == len(plan.steps)
    again = plan_augmentation(SHAPE, lesion_mask=None, location_map=loc, bank=bank, seed=seed,
                              spacing_mm=(0.5, 0.5), diameters_mm=[4.0, 6.0])
    assert again == plan


def test_target_counts_cover_one_to_three(bank):
    counts = {
        len(plan_augmentation(SHAPE, lesion_mask=None, location_map=_location_map(), bank=bank, seed=s).steps)
        for s in range(40)
    }
    assert counts == {1, 2, 3}


def test_lesion_free_image_needs_a_location_map(bank):
    with pytest.raises(MaskError):
        plan_augmentation(SHAPE, lesion_mask=None, location_map=None, bank=bank, seed=0)


# -- lesion images -----------------------------------------------------------------------------
def test_single_lesion_is_always_replaced_never_removed(bank):
    lesion = ellipse_mask(SHAPE, (80, 80), (7, 5))
    for seed in range(10):
        plan = plan_augmentation(SHAPE, lesion_mask=lesion, location_map=None, bank=bank, seed=seed)
        modes = [s.request.mode for s in plan.steps]
        assert modes == ["remove", "inpaint"]
        assert plan.steps[1].request.centre_rc == pytest.approx((80.5, 80.5), abs=1.0)
        assert plan.apply_to_mask(lesion).any()


def test_multi_lesion_images_stay_positive_and_sometimes_lose_lesions(bank):
    lesion = (ellipse_mask(SHAPE, (30, 30), (5, 5)) | ellipse_mask(SHAPE, (80, 120), (6, 4))
              | ellipse_mask(SHAPE, (130, 50), (4, 6)))
    kept_counts = set()
    for plan in plan_augmentations(SHAPE, n_variants=30, seed=1, lesion_mask=lesion,
                                   location_map=None, bank=bank):
        after = plan.apply_to_mask(lesion)
        n_after = len(component_masks(after))
        assert n_after >= 1
        kept_counts.add(n_after)
        for removed in (s for s in plan.steps if s.request.mode == "remove"):
            assert removed.request.mask_source.kind == "existing"
    assert min(kept_counts) < 3 and 3 in kept_counts


def test_plan_augmentations_gives_ten_distinct_variants_by_default(bank):
    plans = plan_augmentations(SHAPE, seed=4, lesion_mask=None, location_map=_location_map(), bank=bank)
    assert len(plans) == 10  # P0 §IV-A
    assert len({p.to_json() for p in plans}) == 10


def test_augmentation_plan_json_round_trip(bank):
    plan = plan_augmentation(SHAPE, lesion_mask=None, location_map=_location_map(), bank=bank, seed=9)
    assert AugmentationPlan.from_json(plan.to_json()) == plan


# -- non-lesion masks (P0 §III-A) -------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_nonlesion_masks_lie_in_lesion_free_tissue_with_p0_widths(seed):
    lesion = ellipse_mask((120, 120), (60, 60), (20, 20))
    free = lesion_free_region(lesion, margin_px=2)
    nl = sample_nonlesion_mask(np.random.default_rng(seed), free)
    assert 10 <= nl.width_px <= 50  # P0 §III-A
    square = free[nl.row0 : nl.row0 + nl.width_px, nl.col0 : nl.col0 + nl.width_px]
    assert square.shape == (nl.width_px, nl.width_px) and square.all()
    # the hole is a disc of diameter wm / 1.2 (P0 Eq. 1's hole-to-crop ratio)
    assert nl.hole.shape == (nl.width_px, nl.width_px)
    assert nl.hole.sum() == pytest.approx(np.pi / 4 * (nl.width_px / 1.2) ** 2, rel=0.2)


def test_nonlesion_mask_with_a_single_possible_position():
    free = np.zeros((30, 30), bool)
    free[5:17, 9:21] = True  # exactly one 12x12 square
    nl = sample_nonlesion_mask(np.random.default_rng(0), free, width_range_px=(12, 12))
    assert (nl.row0, nl.col0, nl.width_px) == (5, 9, 12)
    with pytest.raises(MaskError):
        sample_nonlesion_mask(np.random.default_rng(0), free, width_range_px=(13, 13))


def test_nonlesion_widths_span_p0_range():
    rng = np.random.default_rng(0)
    widths = {sample_nonlesion_mask(rng, np.ones((80, 80), bool)).width_px for _ in range(400)}
    assert min(widths) == 10 and max(widths) == 50


def test_removal_hole_covers_the_lesion():
    lesion = ellipse_mask((60, 60), (25, 33), (9, 3), 0.8)
    hole, r0, c0 = removal_hole(lesion)
    full = np.zeros((60 + hole.shape[0], 60 + hole.shape[1]), bool)
    full[r0 : r0 + hole.shape[0], c0 : c0 + hole.shape[1]] = hole
    assert np.all(full[:60, :60][lesion])


# -- generator inputs ------------------------------------------------------------------------
def test_texture_input_hand_computed():
    image = np.array([[0.2, 0.4], [0.6, 0.8]], np.float32)
    mask = np.array([[True, False], [False, True]])
    out = texture_input(image, mask)  # P3 §III-C: I ⊙ (1 − M) + M, M as second channel
    np.testing.assert_allclose(out[0], [[1.0, 0.4], [0.6, 1.0]])
    np.testing.assert_array_equal(out[1], [[1.0, 0.0], [0.0, 1.0]])
    assert out.shape == (2, 2, 2) and out.dtype == np.float32


def test_outpaint_region_is_everything_but_the_lesion():
    lesion = np.zeros((7, 7), bool)
    lesion[3, 3] = True
    region = outpaint_region(lesion)
    assert region.sum() == 48 and not region[3, 3]
    grown = outpaint_region(lesion, keep_margin_px=1)
    assert grown.sum() == 49 - 9
    original = np.arange(49, dtype=np.float32).reshape(7, 7)
    composed = compose(original, np.full((7, 7), -1.0, np.float32), region)
    assert composed[3, 3] == original[3, 3] and composed[0, 0] == -1.0
