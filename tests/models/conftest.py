"""Tiny-width configs and a small phantom dataset shared by the model tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models.config import TrainConfig, default_config

TINY = {
    "shape": dict(base_channels=16, patch_px=32, lr_g=2e-3, lr_d=2e-3, batch_size=12),
    "texture": dict(base_channels=8, disc_channels=8, patch_px=32, perceptual_weights="disabled", lr_g=3e-3),
    "outpaint": dict(base_channels=8, disc_channels=8, patch_px=32, perceptual_weights="disabled", lr_g=1e-3),
    # lesion patches only (P0's non-lesion pairs, on by default, double the data of a 200-step test)
    "cascade": dict(base_channels=8, disc_channels=8, patch_px=32, local_px=16, content_weights="disabled",
                    batch_size=8, lr_g=1e-3, lr_d=1e-3, nonlesion_pairs=0.0),
    "pix2pix": dict(base_channels=8, disc_channels=8, patch_px=32, num_downs=5, batch_size=4, lr_g=1e-3, lr_d=1e-4),
}


@pytest.fixture(scope="session")
def chest_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom_chest")
    generate_phantom_dataset(out, "chest", 12, size_px=128)
    return out


def tiny_config(family: str, dataset: Path, out_dir: Path, **run) -> TrainConfig:
    defaults = dict(dataset=str(dataset), out_dir=str(out_dir), steps=20, val_every=0, checkpoint_every=0,
                    sample_every=0, log_every=1, num_threads=0)
    defaults.update(run)
    config = default_config(family, **defaults)
    config.model = dataclasses.replace(config.model, **TINY[family])
    return config
