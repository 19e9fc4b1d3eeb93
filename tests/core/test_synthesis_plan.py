"""SynthesisRequest / SynthesisPlan: determinism, JSON provenance, crops (the paste is tested
with the engine in test_synthesis_engine.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lesion_studio.core.errors import ConfigError, MaskError
from lesion_studio.core.geometry.crops import lesion_bbox
from lesion_studio.core.geometry.size_modulation import moment_diameter
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.synthesis_plan import (
    Blending,
    MaskSource,
    SynthesisPlan,
    SynthesisRequest,
    build_plan,
)
from tests.core._lesion_strategies import ellipse_mask, lesion_shapes


@pytest.fixture(scope="module")
def bank() -> MaskBank:
    masks = [
        ellipse_mask((120, 120), (30, 30), (12, 7), 0.4) | ellipse_mask((120, 120), (90, 80), (5, 5)),
        ellipse_mask((120, 120), (60, 60), (20, 9), -1.0),
    ]
    return MaskBank.from_masks(masks, spacings_mm=[(0.5, 0.5), None])


def _image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, size=shape).astype(np.float32)


def test_request_validation_names_the_problem():
    src = MaskSource("bank")
    with pytest.raises(ConfigError, match="mode"):
        SynthesisRequest(mode="paint", centre_rc=(1, 1), mask_source=src)
    with pytest.raises(ConfigError, match="not both"):
        SynthesisRequest(mode="inpaint", centre_rc=(1, 1), mask_source=src, diameter_mm=2, diameter_px=2)
    with pytest.raises(ConfigError, match="remove"):
        SynthesisRequest(mode="remove", centre_rc=(1, 1), mask_source=src)
    with pytest.raises(ConfigError):
        MaskSource("webcam")
    with pytest.raises(ConfigError):
        Blending(feather_px=-1.0)


def test_request_is_frozen():
    req = SynthesisRequest(mode="inpaint", centre_rc=(1, 1), mask_source=MaskSource("bank"))
    with pytest.raises(AttributeError):
        req.seed = 3  # type: ignore[misc]


def test_drawn_mask_is_centred_on_the_request_hand_computed():
    square = np.ones((5, 5), dtype=bool)
    req = SynthesisRequest(mode="inpaint", centre_rc=(10.5, 10.5), mask_source=MaskSource("drawn"))
    plan = build_plan(req, (40, 40), source_mask=square)
    assert plan.footprint_origin == (8, 8)
    assert plan.footprint.shape == (5, 5)
    # P0 Eq. 1-2 on the 5x5 box at (8, 8): wm = 6, top-left (7.5, 7.5); context 18 px at (2, 2)
    assert plan.mask_crop.height == pytest.approx(6.0)
    assert plan.mask_crop.row0 == pytest.approx(7.5)
    assert (plan.context.row0, plan.context.col0, plan.context.height) == (2, 2, 18)
    assert plan.rotation_deg == 0.0 and not plan.flip_vertical and not plan.flip_horizontal


def test_diameter_mm_without_spacing_is_refused_and_px_works_with_a_note(bank):
    req = SynthesisRequest(mode="inpaint", centre_rc=(50, 50), mask_source=MaskSource("bank"),
                           diameter_mm=8.0)
    with pytest.raises(ConfigError, match="spacing"):
        build_plan(req, (100, 100), spacing_mm=None, bank=bank)
    req_px = SynthesisRequest(mode="inpaint", centre_rc=(50, 50), mask_source=MaskSource("bank"),
                              diameter_px=12.0)
    plan = build_plan(req_px, (100, 100), spacing_mm=None, bank=bank)
    assert any("pixel" in note for note in plan.notes)
    assert abs(moment_diameter(plan.footprint) - 12.0) <= 1.0


def test_diameter_mm_follows_the_image_spacing(bank):
    req = SynthesisRequest(mode="inpaint", centre_rc=(100, 100), mask_source=MaskSource("bank", 0),
                           diameter_mm=10.0, rotation_deg=0.0, flip_vertical=False, flip_horizontal=False)
    fine = build_plan(req, (200, 200), spacing_mm=(0.25, 0.25), bank=bank)
    coarse = build_plan(req, (200, 200), spacing_mm=(1.0, 1.0), bank=bank)
    assert moment_diameter(fine.footprint) == pytest.approx(40.0, abs=1.0)
    assert moment_diameter(coarse.footprint) == pytest.approx(10.0, abs=1.0)


def test_bank_entry_keeps_its_real_size_in_mm(bank):
    # entry 0 came from a 0.5 mm image; placed in a 0.25 mm image it is twice as many pixels
    req = SynthesisRequest(mode="inpaint", centre_rc=(100, 100), mask_source=MaskSource("bank", 0),
                           rotation_deg=0.0, flip_vertical=False, flip_horizontal=False)
    plan = build_plan(req, (200, 200), spacing_mm=(0.25, 0.25), bank=bank)
    assert plan.diameter_unit == "mm"
    expected_px = 2 * bank.diameters_px[0]
    assert abs(moment_diameter(plan.footprint) - expected_px) <= max(1.0, 0.02 * expected_px)


def test_generator_mask_needs_a_diameter():
    req = SynthesisRequest(mode="inpaint", centre_rc=(50, 50), mask_source=MaskSource("generator"))
    with pytest.raises(ConfigError, match="diameter"):
        build_plan(req, (100, 100), source_mask=ellipse_mask((128, 128), (64, 64), (25, 25)))


def test_lesion_entirely_outside_the_image_is_refused():
    req = SynthesisRequest(mode="inpaint", centre_rc=(-100, 50), mask_source=MaskSource("drawn"))
    with pytest.raises(ConfigError, match="outside"):
        build_plan(req, (100, 100), source_mask=np.ones((4, 4), bool))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), other=st.integers(0, 2**32))
def test_plans_are_identical_for_a_seed_and_differ_across_seeds(bank, seed, other):
    assume(seed != other)
    req = SynthesisRequest(mode="inpaint", centre_rc=(64, 64), mask_source=MaskSource("bank"), seed=seed)
    a = build_plan(req, (128, 128), spacing_mm=(0.5, 0.5), bank=bank)
    b = build_plan(req, (128, 128), spacing_mm=(0.5, 0.5), bank=bank)
    assert a == b and a.to_json() == b.to_json()
    np.testing.assert_array_equal(a.footprint, b.footprint)
    c = build_plan(
        SynthesisRequest(mode="inpaint", centre_rc=(64, 64), mask_source=MaskSource("bank"), seed=other),
        (128, 128), spacing_mm=(0.5, 0.5), bank=bank,
    )
    # the rotation is drawn from U[-10°, 10°]: two seeds giving the same float is not a thing
    assert c.rotation_deg != a.rotation_deg
    assert c.to_json() != a.to_json()
    assert -10.0 <= a.rotation_deg <= 10.0


def test_plan_json_round_trip_is_exact(bank):
    req = SynthesisRequest(mode="inpaint", centre_rc=(30.5, 90.25), mask_source=MaskSource("bank", label="b.npz"),
                           diameter_mm=6.0, seed=11, model_id="cascade-unet@abc",
                           blending=Blending(feather_px=3))
    plan = build_plan(req, (128, 160), spacing_mm=(0.4, 0.6), bank=bank)
    text = plan.to_json()
    json.loads(text)  # plain JSON
    again = SynthesisPlan.from_json(text)
    assert again == plan
    np.testing.assert_array_equal(again.footprint, plan.footprint)
    assert again.request == plan.request


def test_plans_of_older_versions_with_crop_blending_still_load(bank):
    req = SynthesisRequest(mode="inpaint", centre_rc=(30.5, 90.25), mask_source=MaskSource("bank"), diameter_mm=6.0)
    data = build_plan(req, (128, 160), spacing_mm=(0.4, 0.6), bank=bank).to_dict()
    data["request"]["blending"].update(region="crop", match_intensity=True)  # fields of plan version 1
    assert SynthesisPlan.from_dict(data).request.blending == Blending()


def test_plan_json_rejects_other_documents():
    with pytest.raises(ConfigError):
        SynthesisPlan.from_json('{"format": "something-else"}')
    with pytest.raises(ConfigError):
        SynthesisPlan.from_json("not json")


def test_remove_covers_the_lesion_and_clears_the_ground_truth():
    lesion_mask = ellipse_mask((100, 100), (40, 60), (6, 9), 0.3) | ellipse_mask((100, 100), (80, 20), (4, 4))
    req = SynthesisRequest(mode="remove", centre_rc=(40, 60), mask_source=MaskSource("existing"))
    plan = build_plan(req, (100, 100), lesion_mask=lesion_mask)
    hole = plan.footprint_image()
    first = ellipse_mask((100, 100), (40, 60), (6, 9), 0.3)
    assert np.all(hole[first])  # every pixel of the removed lesion is inside the hole
    after = plan.paste_mask(lesion_mask)
    assert not np.any(after[first])
    np.testing.assert_array_equal(after, lesion_mask & ~first)


def test_existing_lesion_is_needed_for_remove():
    req = SynthesisRequest(mode="remove", centre_rc=(40, 60), mask_source=MaskSource("existing"))
    with pytest.raises(MaskError):
        build_plan(req, (100, 100), lesion_mask=np.zeros((100, 100), bool))
