"""Objective "remove" (P0 §III-A, SPEC §1.2): non-lesion holes in lesion-free tissue, native crops."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.core.geometry.crops import resize_image
from lesion_studio.core.geometry.nonlesion import HOLE_SHAPES, disc, shaped_hole
from lesion_studio.models.config import TrainConfig, default_config
from lesion_studio.models.data import (
    build_patches,
    dataset_value_range,
    remove_margin_px,
    remove_patches,
    remove_width_range,
)
from lesion_studio.models.trainer import STRATEGIES, Trainer
from tests.models.conftest import tiny_config

PATCH_PX = 32


def _remove_model(family: str = "texture", patch_px: int = PATCH_PX):
    return dataclasses.replace(default_config(family).model, patch_px=patch_px, objective="remove")


@pytest.fixture(scope="module")
def remove_set(chest_dataset: Path):
    dataset = load_dataset(chest_dataset)
    cases = list(dataset.cases)
    normalizer = dataset_value_range(dataset, cases)
    patches = build_patches(dataset, cases, _remove_model(), normalizer, seed=3)
    return dataset, cases, normalizer, patches


def test_holes_lie_in_lesion_free_tissue_of_both_kinds_of_image(remove_set) -> None:
    dataset, cases, _, patches = remove_set
    by_id = {c.case_id: c for c in cases}
    assert len(patches) > 0 and len(patches.origins) == len(patches)
    kinds = set()
    for origin in patches.origins:
        case = by_id[origin.case_id]
        lesion = dataset.read_mask(case)
        margin = remove_margin_px(lesion.shape)
        near_lesion = ndimage.distance_transform_edt(~lesion) <= margin if lesion.any() else lesion
        hole = origin.hole_in_image(lesion.shape)
        assert hole.any() and not (hole & near_lesion).any(), origin.case_id
        kinds.add(case.has_lesion)
    assert kinds == {True, False}  # lesion-free images and lesion-free parts of lesion images


def test_target_is_the_original_tissue_cut_at_native_scale(remove_set) -> None:
    dataset, cases, normalizer, patches = remove_set
    by_id = {c.case_id: c for c in cases}
    native = 0
    for i, origin in enumerate(patches.origins):
        image = dataset.read_image(by_id[origin.case_id])
        box = origin.box
        assert 0 <= box.row0 and box.row1 <= image.shape[0] and 0 <= box.col0 and box.col1 <= image.shape[1]
        crop = image[box.row0 : box.row1, box.col0 : box.col1]
        mask = patches.masks[i, 0].numpy().astype(bool)
        if box.height == PATCH_PX:  # the hole fits: native pixels, untouched
            native += 1
            expected = normalizer.to_model(crop)
            r, c = origin.hole_row0 - box.row0, origin.hole_col0 - box.col0
            local = np.zeros_like(mask)
            local[r : r + origin.width_px, c : c + origin.width_px] = origin.hole
            assert np.array_equal(mask, local)
        else:  # a hole wider than patch_px / 2: a 2·width crop, downsampled at most 2x
            assert origin.width_px > PATCH_PX // 2 and box.height == 2 * origin.width_px <= 2 * PATCH_PX
            expected = normalizer.to_model(resize_image(crop, (PATCH_PX, PATCH_PX)))
        target = patches.images[i, 0].numpy()
        assert np.array_equal(target[mask], expected[mask])  # the hole's target: the tissue that was there
        assert np.array_equal(target, expected)
        # the crop is centred on the hole
        centre = (origin.hole_row0 + origin.width_px / 2 - box.row0, origin.hole_col0 + origin.width_px / 2 - box.col0)
        assert abs(centre[0] - box.height / 2) <= 1 and abs(centre[1] - box.width / 2) <= 1
    assert native > 0


def test_hole_widths_span_the_scaled_p0_range() -> None:
    assert remove_width_range((512, 600)) == (10, 50)  # native: P0 §III-A
    assert remove_width_range((128, 128)) == (5, 25)  # small images: scaled with their size
    rng = np.random.default_rng(0)
    image = rng.normal(size=(128, 128)).astype(np.float32)
    lesion = np.zeros((128, 128), bool)
    lesion[60:68, 60:68] = True
    got = remove_patches(image, lesion, PATCH_PX, rng, n_holes=400)
    widths = [o.width_px for _, _, o in got]
    assert len(got) > 300 and min(widths) == 5 and max(widths) == 25
    for crop, hole, origin in got:
        assert crop.shape == hole.shape == (PATCH_PX, PATCH_PX)
        rows, cols = np.nonzero(hole)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= PATCH_PX // 2  # fits comfortably in the patch
    # a patch smaller than the widest holes: widths stop where a 2x downsampling still fits
    small = [o.width_px for _, _, o in remove_patches(image, lesion, 16, np.random.default_rng(1), n_holes=200)]
    assert max(small) == 16 and min(small) == 5


def test_hole_shapes_span_their_width() -> None:
    rng = np.random.default_rng(5)
    for shape in HOLE_SHAPES:
        for width in (5, 12, 37):
            hole = shaped_hole(rng, width, shape)
            rows, cols = np.nonzero(hole)
            assert hole.shape == (width, width)
            assert max(np.ptp(rows), np.ptp(cols)) + 1 >= width - 1, (shape, width)
    # without a shape asked for, all four outlines occur (mostly ellipses and lobulated ones)
    fractions = [float(shaped_hole(rng, 30).mean()) for _ in range(80)]
    squares = sum(f == 1.0 for f in fractions)
    discs = sum(f == float(disc(30).mean()) for f in fractions)
    assert squares > 0 and discs > 0 and len(fractions) - squares - discs >= 40


def test_patches_are_deterministic_per_seed(remove_set) -> None:
    dataset, cases, normalizer, patches = remove_set
    again = build_patches(dataset, list(reversed(cases)), _remove_model(), normalizer, seed=3)
    order = sorted(range(len(again)), key=lambda i: (again.case_ids[i], i))
    first = sorted(range(len(patches)), key=lambda i: (patches.case_ids[i], i))
    assert torch.equal(again.images[order], patches.images[first])
    assert torch.equal(again.masks[order], patches.masks[first])
    def placements(ps):
        return sorted((o.case_id, o.hole_row0, o.hole_col0, o.width_px) for o in ps.origins)

    assert placements(again) == placements(patches)
    other = build_patches(dataset, cases, _remove_model(), normalizer, seed=4)
    assert placements(other) != placements(patches)


@pytest.mark.parametrize(
    "family, objective, message",
    [
        ("texture", "erase", "model.objective"),
        ("cascade", "Remove", "model.objective"),
        ("outpaint", "remove", "model.objective"),
    ],
)
def test_objective_is_validated(family: str, objective: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        TrainConfig.from_dict({"family": family, "model": {"objective": objective}})


def test_objective_round_trips_and_defaults_to_inpaint() -> None:
    assert default_config("texture").model.objective == "inpaint"
    assert default_config("cascade").model.objective == "inpaint"
    config = TrainConfig.from_dict({"family": "cascade", "model": {"objective": "remove"}})
    assert TrainConfig.from_dict(config.to_dict()).model.objective == "remove"
    with pytest.raises(ConfigError, match=r"model\.objective"):  # pix2pix has no holes to fill
        TrainConfig.from_dict({"family": "pix2pix", "model": {"objective": "remove"}})


def test_tiny_remove_model_learns_held_out_tissue(chest_dataset: Path, tmp_path: Path) -> None:
    """A tiny texture model trained on non-lesion holes fills held-out holes better than untrained."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        steps = 150
        config = tiny_config("texture", chest_dataset, tmp_path, steps=steps, log_every=steps, num_threads=1)
        config.model = dataclasses.replace(config.model, objective="remove")
        dataset = load_dataset(chest_dataset)
        train_cases = list(dataset.split("train"))
        held_cases = list(dataset.split("val")) + list(dataset.split("test"))  # other patients
        normalizer = dataset_value_range(dataset, train_cases)
        train = build_patches(dataset, train_cases, config.model, normalizer, seed=0)
        held = build_patches(dataset, held_cases, config.model, normalizer, seed=1)
        assert len(train) >= 16 and len(held) >= 8
        torch.manual_seed(config.run.seed)  # the trainer initialises its networks the same way
        untrained = STRATEGIES["texture"](config.model, steps, torch.device("cpu"), contextlib.nullcontext)
        trainer = Trainer(config, patches=(train, held, normalizer, "test"))
        before = trainer.validate(untrained, held)["masked_l1"]
        result = trainer.run()
        after = trainer.validate(trainer.strategy, held)["masked_l1"]
        assert after <= 0.8 * before, (before, after)
        # the objective travels in the checkpoint JSON: config.model.objective
        meta = json.loads(Path(str(result.checkpoint) + ".json").read_text())
        assert meta["config"]["model"]["objective"] == "remove"
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
