"""P0/P2 details (issue 14 item 5): non-stone pairs in inpainter training, rotation ±5° and a
fresh 5 % of the synthetic pool per epoch in the segmenter, pix2pix on multi-class labels."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lesion_studio.core.dataset import load_dataset
from lesion_studio.core.errors import ConfigError
from lesion_studio.models.config import Pix2PixConfig, TrainConfig, default_config
from lesion_studio.models.data import build_patches, dataset_value_range, split_cases
from lesion_studio.models.experiments import (
    experiment_config_from_dict, p0_rotation, synthetic_epoch_sample, train_segmenter,
)
from lesion_studio.models.networks.pix2pix import class_condition
from lesion_studio.models.segmentation import build_segmenter
from lesion_studio.models.trainer import Trainer
from tests.models.conftest import TINY, tiny_config


# -- P0 §III-A: non-stone pairs -------------------------------------------------------------------
def _patches(dataset_dir: Path, family: str, **model):
    config = default_config(family)
    config.model = dataclasses.replace(config.model, **{**TINY[family], **model})
    dataset = load_dataset(dataset_dir)
    cases, _ = split_cases(dataset, 0.0, 0)
    return dataset, build_patches(dataset, cases, config.model, dataset_value_range(dataset, cases), seed=3)


def test_nonlesion_pairs_join_the_inpainter_patches(chest_dataset: Path) -> None:
    _, plain = _patches(chest_dataset, "cascade", nonlesion_pairs=0.0)
    dataset, mixed = _patches(chest_dataset, "cascade", nonlesion_pairs=1.0)
    n = len(plain)
    assert len(mixed) == 2 * n  # P0 §III-A: as many stone-free pairs as stone pairs
    assert torch.equal(mixed.images[:n], plain.images) and torch.equal(mixed.masks[:n], plain.masks)
    assert mixed.lesion_free is not None and mixed.lesion_free.tolist() == [False] * n + [True] * n
    free_cases = {c.case_id for c in dataset.cases if not c.has_lesion}
    assert set(mixed.case_ids[n:]) <= free_cases and len(set(mixed.case_ids[n:])) > 1  # stone-free images
    holes = mixed.masks[n:]
    assert bool((holes.flatten(1).sum(1) > 0).all())
    # the hole is in the middle third of its 3·wm context crop, like a lesion in its crop
    rows = holes[:, 0].sum(2) > 0
    assert bool(rows[:, : 32 // 4].sum() == 0) and bool(rows[:, -(32 // 4):].sum() == 0)
    _, again = _patches(chest_dataset, "cascade", nonlesion_pairs=1.0)
    assert torch.equal(again.images, mixed.images)  # seeded per case
    _, half = _patches(chest_dataset, "texture", nonlesion_pairs=0.5)
    _, texture = _patches(chest_dataset, "texture")
    assert len(half) == len(texture) + round(0.5 * len(texture)) and texture.lesion_free is None


def test_nonlesion_pairs_are_refused_where_they_mean_nothing() -> None:
    with pytest.raises(ConfigError, match="model.nonlesion_pairs"):  # the outpainter keeps the lesion
        TrainConfig.from_dict({"family": "outpaint", "model": {"nonlesion_pairs": 1.0}})
    assert TrainConfig.from_dict({"family": "cascade", "model": {"objective": "remove"}}).model.objective == "remove"
    assert default_config("cascade").model.nonlesion_pairs == 1.0  # P0's default
    assert default_config("texture").model.nonlesion_pairs == 0.0  # P3 trains on nodules only


# -- P0 §IV-B: rotation and the synthetic share per epoch ----------------------------------------
def test_five_percent_of_the_synthetic_pool_is_drawn_afresh_each_epoch() -> None:
    draws = [synthetic_epoch_sample(200, 0.05, seed=4, epoch=e) for e in range(6)]
    assert all(len(d) == 10 and len(set(d.tolist())) == 10 and d.min() >= 0 and d.max() < 200 for d in draws)
    assert len({tuple(d.tolist()) for d in draws}) == 6  # another subset every epoch
    assert np.array_equal(draws[2], synthetic_epoch_sample(200, 0.05, seed=4, epoch=2))  # seeded
    assert not np.array_equal(draws[2], synthetic_epoch_sample(200, 0.05, seed=5, epoch=2))
    assert len(synthetic_epoch_sample(30, 0.05, 0, 0)) == 2  # ceil(1.5)
    assert len(synthetic_epoch_sample(3, 0.05, 0, 0)) == 1  # never none of a pool
    assert synthetic_epoch_sample(0, 0.05, 0, 0).size == 0
    assert synthetic_epoch_sample(7, 1.0, 0, 0).tolist() == list(range(7))


def test_rotation_is_bounded_by_five_degrees_and_moves_the_mask_along() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((32, 32), np.float32)
    image[4:10, 14:18] = 1.0
    mask = image > 0
    angles = []
    for _ in range(200):
        out, out_mask, angle = p0_rotation(image, mask, 5.0, rng)
        angles.append(angle)
        assert out.shape == image.shape and out_mask.dtype == bool
        assert abs(int(out_mask.sum()) - int(mask.sum())) <= 6
        assert float(out[out_mask].mean()) > 0.5  # the mask follows the image
    assert max(angles) <= 5.0 and min(angles) >= -5.0 and max(angles) > 4.0 and min(angles) < -4.0


def test_experiment_keys_carry_p0s_defaults_and_bounds(tmp_path: Path) -> None:
    base = {"experiment": {"name": "x", "dataset": str(tmp_path)}}
    config = experiment_config_from_dict(base, tmp_path)
    assert config.rotation_deg == 5.0 and config.synthetic_per_epoch == 0.05
    config = experiment_config_from_dict({**base, "training": {"rotation_deg": 0, "synthetic_per_epoch": 1.0}},
                                         tmp_path)
    assert config.rotation_deg == 0.0 and config.synthetic_per_epoch == 1.0
    with pytest.raises(ConfigError, match="synthetic_per_epoch"):
        experiment_config_from_dict({**base, "training": {"synthetic_per_epoch": 0.0}}, tmp_path)


def test_the_segmenter_trains_on_real_images_and_a_share_of_the_pool() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(32, 32)).astype(np.float32) for _ in range(24)]
    masks = [np.zeros((32, 32), bool) for _ in range(24)]
    for m in masks:
        m[10:16, 10:16] = True
    seen: list[int] = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_segmenter("unet", base_channels=4, depth=2, norm="instance")

        def forward(self, x):
            seen.append(len(x))
            return self.net(x)

    train_segmenter(Counting(), images, masks, [], [], loss_name="dice_bce", epochs=3, batch_size=64, lr=1e-3,
                    seed=0, device="cpu", n_synthetic=20, synthetic_per_epoch=0.05, rotation_deg=5.0)
    assert seen == [4 + 1] * 3  # every real image + ceil(5 % of 20) synthetic per epoch


# -- P2: pix2pix on multi-class label maps ---------------------------------------------------------
def test_class_condition_is_one_channel_per_class() -> None:
    labels = torch.tensor([[[[0.0, 1.0], [2.0, 1.0]]]])
    cond = class_condition(labels, 2)
    assert cond.shape == (1, 2, 2, 2)
    assert cond[0, 0].tolist() == [[-1.0, 1.0], [-1.0, 1.0]] and cond[0, 1].tolist() == [[-1.0, -1.0], [1.0, -1.0]]
    assert torch.equal(class_condition(labels.clamp(max=1), 0), labels.clamp(max=1) * 2 - 1)


@pytest.fixture(scope="module")
def two_class_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 64² cases, two lesion classes (1: bright disc, 2: dark square), `.npy` files."""
    root = tmp_path_factory.mktemp("two_class")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    cases = []
    for i in range(8):
        image = rng.normal(100, 5, (64, 64)).astype(np.float32)
        labels = np.zeros((64, 64), np.uint8)
        r, c = rng.integers(12, 50, 2)
        rr, cc = np.mgrid[:64, :64]
        disc = (rr - r) ** 2 + (cc - c) ** 2 <= 25
        labels[disc] = 1
        image[disc] += 60
        labels[5:11, 5:11] = 2
        image[5:11, 5:11] -= 60
        np.save(root / "images" / f"c{i}.npy", image)
        np.save(root / "masks" / f"c{i}.npy", labels)
        cases.append({"id": f"c{i}", "image": f"images/c{i}.npy", "mask": f"masks/c{i}.npy",
                      "patient_id": f"p{i}", "has_lesion": True, "split": "train" if i < 6 else "val"})
    (root / "dataset.json").write_text(json.dumps({"format": "lesion-studio-dataset", "version": 1,
                                                   "cases": cases}), encoding="utf-8")
    return root


def test_pix2pix_trains_on_two_lesion_classes(two_class_dataset: Path, tmp_path: Path) -> None:
    config = tiny_config("pix2pix", two_class_dataset, tmp_path / "run", steps=3, val_every=3)
    config.model = dataclasses.replace(config.model, condition_classes=2, in_channels=2, best_metric="fcn")
    dataset = load_dataset(two_class_dataset)
    cases, _ = split_cases(dataset, 0.0, 0)
    patches = build_patches(dataset, cases, config.model, dataset_value_range(dataset, cases))
    assert set(torch.unique(patches.masks).tolist()) == {0.0, 1.0, 2.0}  # the classes survive the resize
    torch.manual_seed(0)
    result = Trainer(config).run()
    assert result.step == 3 and result.selection["criterion"] == "fcn"
    from lesion_studio.models.inference import load_synthesizer

    engine = load_synthesizer(result.checkpoint)
    assert engine.backend.condition_classes == 2
    with pytest.raises(ConfigError, match="model.in_channels"):
        TrainConfig.from_dict({"family": "pix2pix", "model": {"condition_classes": 2}})
    assert Pix2PixConfig().condition_classes == 0


def test_a_label_outside_the_classes_is_refused_naming_the_file(two_class_dataset: Path, tmp_path: Path) -> None:
    model = dataclasses.replace(Pix2PixConfig(), **TINY["pix2pix"], condition_classes=2, in_channels=2)
    dataset = load_dataset(two_class_dataset)
    cases, _ = split_cases(dataset, 0.0, 0)
    one = dataclasses.replace(model, condition_classes=0, in_channels=1)
    assert set(torch.unique(build_patches(dataset, cases[:1], one, dataset_value_range(dataset, cases)).masks)
               .tolist()) == {0.0, 1.0}  # binary: any class is lesion
    bad = dataclasses.replace(model, condition_classes=2)
    np.save(tmp_path / "bad.npy", np.full((64, 64), 3, np.uint8))
    bad_case = dataclasses.replace(cases[0], mask_path=tmp_path / "bad.npy")
    with pytest.raises(ConfigError, match="mask value 3"):
        build_patches(dataset, [bad_case], bad, dataset_value_range(dataset, cases))
